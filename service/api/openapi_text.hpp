// proto/openapi.yaml, embedded at build time and served at GET /openapi.yaml.
#pragma once

#include <string_view>

namespace gatherd::service {
std::string_view openapi_text();
}
