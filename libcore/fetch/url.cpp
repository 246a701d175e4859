#include "libcore/fetch/url.hpp"

#include <algorithm>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <cctype>

#include "libcore/fetch/http_client.hpp"
#include "libcore/fetch/http_syntax.hpp"

namespace gatherd::core::fetch {

namespace {

namespace urls = boost::urls;
namespace ip = boost::asio::ip;

[[noreturn]] void invalid_url(const std::string& why) {
  throw fetch_error("invalid_url", why);
}

bool is_host_name(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.' || c == '_';
  });
}

fetch_url from_view(urls::url_view u) {
  fetch_url t;
  const auto scheme = u.scheme_id();
  if (scheme != urls::scheme::http && scheme != urls::scheme::https) {
    invalid_url("only http and https URLs can be fetched: " + std::string(u.buffer()));
  }
  t.tls = scheme == urls::scheme::https;
  if (!u.has_authority()) invalid_url("the URL has no host: " + std::string(u.buffer()));
  if (u.has_userinfo()) invalid_url("user information in URLs is not allowed");
  switch (u.host_type()) {
    case urls::host_type::name:
      t.host = u.host();  // percent-decoded: checked below, before it can reach a header
      std::transform(t.host.begin(), t.host.end(), t.host.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (t.host.empty()) invalid_url("the URL has no host: " + std::string(u.buffer()));
      if (!is_host_name(t.host)) {
        invalid_url("the host may hold only letters, digits, '-', '.' and '_'");
      }
      break;
    case urls::host_type::ipv4:
      t.literal = ip::address_v4(u.host_ipv4_address().to_bytes());
      t.host = t.literal->to_string();
      break;
    case urls::host_type::ipv6:
      t.literal = ip::address_v6(u.host_ipv6_address().to_bytes());
      t.host = t.literal->to_string();
      break;
    default:
      invalid_url("unsupported host in " + std::string(u.buffer()));
  }
  const std::uint16_t default_port = t.tls ? 443 : 80;
  t.port = default_port;
  if (u.has_port() && !u.port().empty()) {
    // By hand: port_number() wraps values past 65535 around instead of refusing them.
    unsigned long port = 0;
    for (char c : u.port()) {
      port = port * 10 + static_cast<unsigned>(c - '0');  // the grammar allows digits only
      if (port > 65535) break;
    }
    if (port == 0 || port > 65535) invalid_url("invalid port in " + std::string(u.buffer()));
    t.port = static_cast<std::uint16_t>(port);
  }
  t.host_header = t.literal && t.literal->is_v6() ? "[" + t.host + "]" : t.host;
  const std::string port = ":" + std::to_string(t.port);
  t.origin = std::string(t.tls ? "https://" : "http://") + t.host_header + port;
  t.host_port = t.host_header + port;
  if (t.port != default_port) t.host_header += port;
  t.path = u.encoded_path();
  if (t.path.empty()) t.path = "/";
  if (u.has_query()) t.path += "?" + std::string(u.encoded_query());
  // Boost.URL 1.81 reads "http://127.0.0.1%00.example.com:8080/a" as the IPv4 host 127.0.0.1
  // followed by the path "%00.example.com:8080/a": an authority's path must begin with '/'.
  if (!is_origin_form(t.path)) {
    invalid_url("the URL's host is not followed by a port or a path: " + std::string(u.buffer()));
  }
  t.url = u.buffer();
  return t;
}

}  // namespace

fetch_url parse_fetch_url(std::string_view text) {
  auto parsed = urls::parse_absolute_uri(text);
  if (!parsed) invalid_url("not an absolute URL: " + std::string(text));
  return from_view(*parsed);
}

std::optional<fetch_url> try_parse_fetch_url(std::string_view text) {
  try {
    return parse_fetch_url(text);
  } catch (const fetch_error&) {
    return std::nullopt;
  }
}

fetch_url resolve_location(const fetch_url& base, std::string_view location) {
  auto ref = urls::parse_uri_reference(location);
  if (!ref) invalid_url("redirect to an invalid Location: " + std::string(location));
  urls::url resolved = *urls::parse_absolute_uri(base.url);
  if (!resolved.resolve(*ref)) invalid_url("cannot resolve Location: " + std::string(location));
  resolved.remove_fragment();
  return from_view(resolved);
}

}  // namespace gatherd::core::fetch
