// Invariants the fuzz targets assert. A broken one prints what broke and aborts: libFuzzer
// reports that as a crash and saves the input, like a sanitizer finding.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "service/http/http_message.hpp"

namespace gatherd::fuzz {

[[noreturn]] inline void fail(std::string_view what, std::string_view detail = {}) {
  std::fprintf(stderr, "\n*** invariant broken: %.*s\n%.*s\n", static_cast<int>(what.size()),
               what.data(), static_cast<int>(std::min<std::size_t>(detail.size(), 4096)),
               detail.data());
  std::fflush(stderr);
  std::abort();
}

inline void require(bool ok, std::string_view what, std::string_view detail = {}) {
  if (!ok) fail(what, detail);
}

// JSON text as any client would read it (nlohmann's own parser, not the service's reader).
inline std::optional<nlohmann::json> client_parse(std::string_view text) {
  auto value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

// GATHERD_FUZZ_TRACE=1 prints every answer checked: to see what a seed or a crash does.
inline bool tracing() {
  static const bool on = std::getenv("GATHERD_FUZZ_TRACE") != nullptr;
  return on;
}

// What every answer of the HTTP API must be, whatever the request: a status a client can act
// on and that never blames the server (5xx here means a request made us fail), a body in the
// type it announces (a problem document naming the same status), and headers that cannot
// split the response.
inline void check_response(const service::http_response& res, std::string_view context) {
  const std::string where = "status " + std::to_string(res.status) + " for " + std::string(context);
  if (tracing()) std::fprintf(stderr, "%s\n  %.300s\n", where.c_str(), res.body.c_str());
  require(res.status >= 100 && res.status <= 599, "status out of 100..599", where);
  require(res.status < 500, "5xx answer to a client's request", where + "\n" + res.body);
  for (const auto& [name, value] : res.headers) {
    require(
        !name.empty() && name.find_first_of(std::string_view(":\r\n\0 ", 5)) == std::string::npos,
        "response header name", where + "\n" + name);
    require(value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
            "response header value with CR, LF or NUL", where + "\n" + name + ": " + value);
  }
  if (res.stream) return;  // checked line by line where it is drained
  if (res.content_type == "application/problem+json") {
    const auto doc = client_parse(res.body);
    require(doc && doc->is_object(), "problem body is not a JSON object", where + "\n" + res.body);
    require(doc->value("status", 0u) == res.status, "problem status differs from the answer's",
            where + "\n" + res.body);
    for (const char* field : {"type", "title", "detail", "code"}) {
      require(doc->contains(field) && (*doc)[field].is_string(), "problem field missing",
              where + "\n" + res.body);
    }
    require(res.status >= 400, "problem document on a non-error status", where);
  } else if (res.content_type == "application/json" && !res.body.empty()) {
    require(client_parse(res.body).has_value(), "application/json body does not parse",
            where + "\n" + res.body);
  }
  if (res.status >= 400 && res.status != 499) {
    require(res.content_type == "application/problem+json", "error answered without a problem",
            where + "\n" + res.content_type);
  }
}

}  // namespace gatherd::fuzz
