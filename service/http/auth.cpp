#include "service/http/auth.hpp"

#include <openssl/crypto.h>

#include <boost/algorithm/string/predicate.hpp>

namespace gatherd::service {

bool authorized(const std::vector<std::string>& tokens, std::string_view authorization) {
  if (tokens.empty()) return true;
  static constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() <= scheme.size() ||
      !boost::algorithm::istarts_with(authorization, scheme)) {
    return false;
  }
  const std::string_view presented = authorization.substr(scheme.size());
  for (const auto& token : tokens) {
    if (token.size() == presented.size() &&
        CRYPTO_memcmp(token.data(), presented.data(), token.size()) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace gatherd::service
