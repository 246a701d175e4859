// Bearer-token authentication of /v1/* (RFC 6750): constant-time comparison with each token.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace gatherd::service {

// True when `tokens` is empty (auth off) or `authorization` is "Bearer <one of tokens>".
bool authorized(const std::vector<std::string>& tokens, std::string_view authorization);

}  // namespace gatherd::service
