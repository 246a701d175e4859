// The one parser of outbound URLs (libcore/fetch/url): the input's first line is a URL, the rest
// a redirect's Location resolved against it.
//
// Asserted for every URL it accepts (issue 14, defects 1 and 2): the host is a clean name or an
// IP literal; nothing that reaches the Host header or the request line can end a header line
// or change the request; the request target is origin-form; the explicit port is the one
// connected to; the validated form, read back, means the same; origin_of (the rate limits' key)
// agrees. The only exception it may throw is fetch_error("invalid_url").
#include <cstddef>
#include <cstdint>

#include "libcore/fetch/fetcher.hpp"
#include "libcore/fetch/http_client.hpp"
#include "libcore/fetch/http_syntax.hpp"
#include "libcore/fetch/url.hpp"
#include "tests/fuzz/support/check.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;
namespace fetch = gatherd::core::fetch;

namespace {

bool clean_host(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return std::islower(c) || std::isdigit(c) || c == '-' || c == '.' || c == '_';
  });
}

void check_url(const fetch::fetch_url& u, std::string_view input) {
  const std::string where(input);
  if (u.literal) {
    require(u.host == u.literal->to_string(), "an IP literal's host is not its address", where);
  } else {
    require(clean_host(u.host), "a host name that is not lower-case letters, digits, -._", where);
  }
  require(u.port != 0, "port 0", where);
  for (const std::string* part : {&u.host, &u.host_header, &u.host_port}) {
    require(fetch::is_field_value(*part) && part->find_first_of(" \t/?#@") == std::string::npos,
            "a host part that could change the request", where + "\n" + *part);
  }
  require(u.origin == (u.tls ? "https://" : "http://") + u.host_port,
          "the origin is not scheme://host:port", where + "\n" + u.origin);
  require(fetch::is_origin_form(u.path), "a request target that is not origin-form",
          where + "\n" + u.path);
  const std::string port = ":" + std::to_string(u.port);
  require(u.host_port.ends_with(port), "the port got lost", where);

  // The validated form, read as a URL, means the same request. (It may not read at all: a
  // decoded name such as "1.0.1.1x.example" is an IPv4 address and a path to Boost.URL 1.81,
  // which the parser then refuses. Nothing reads it back, so that is harmless.)
  const auto again = fetch::try_parse_fetch_url(u.origin + u.path);
  if (again) {
    require(again->host == u.host && again->port == u.port && again->tls == u.tls &&
                again->path == u.path && again->host_header == u.host_header,
            "the validated form means another request", where + "\n" + u.origin + u.path);
  }

  const auto key = fetch::origin_of(u.url);
  require(key && key->host == u.host && key->host_port == u.host_port,
          "the rate limits key the URL differently", where);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string_view url_text = input.substr(0, input.find('\n'));
  const std::string_view location =
      url_text.size() < input.size() ? input.substr(url_text.size() + 1) : std::string_view();
  std::optional<fetch::fetch_url> url;
  try {
    url = fetch::parse_fetch_url(url_text);
  } catch (const fetch::fetch_error& e) {
    require(e.type() == "invalid_url", "a URL refused with another type", e.type());
  }
  require(url.has_value() == fetch::try_parse_fetch_url(url_text).has_value(),
          "parse_fetch_url and try_parse_fetch_url disagree", url_text);
  if (!url) return 0;
  check_url(*url, url_text);
  if (location.empty()) return 0;
  try {
    check_url(fetch::resolve_location(*url, location), location);
  } catch (const fetch::fetch_error& e) {
    require(e.type() == "invalid_url", "a Location refused with another type", e.type());
  }
  return 0;
}
