// The one parser of outbound URLs: request validation, the per-host rate limits, the egress
// guard, the connection and the request line all use the fetch_url it returns, so they cannot
// disagree about where a request goes (Boost.URL parses; the rules below decide).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gatherd::core::fetch {

struct fetch_url {
  bool tls = false;
  std::string host;  // lower-case name, or the text of an IP literal (without brackets)
  std::optional<boost::asio::ip::address> literal;
  std::uint16_t port = 0;
  std::string host_header;  // host[:port], IPv6 literals in brackets
  std::string path;         // origin-form request target: path and query
  std::string origin;       // scheme://host:port, the connection pool's key
  std::string host_port;    // host:port, the rate limits' key
  std::string url;          // the URL as given (or as resolved, after a redirect)
};

// An absolute http:// or https:// URL with a host and without user information; the port, if
// given, in 1..65535; a host name of letters, digits, '-', '.' and '_' only (after percent-
// decoding: nothing that could end a header line or change the request). Throws
// fetch_error("invalid_url", why) otherwise.
fetch_url parse_fetch_url(std::string_view text);

// The same, without the exception: nothing for a URL parse_fetch_url refuses.
std::optional<fetch_url> try_parse_fetch_url(std::string_view text);

// A redirect's Location resolved against the URL that answered (RFC 3986 section 5).
fetch_url resolve_location(const fetch_url& base, std::string_view location);

}  // namespace gatherd::core::fetch
