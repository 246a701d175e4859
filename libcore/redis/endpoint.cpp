#include "libcore/redis/endpoint.hpp"

#include <sys/un.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <stdexcept>

namespace gatherd::core::redis {

namespace {

// The URL may hold a password: messages name the problem and never echo the whole input.
[[noreturn]] void refuse(const std::string& why) {
  throw std::invalid_argument("invalid Redis URL: " + why);
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, const char* what) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const bool complete = i + 2 < s.size();
    const int hi = complete ? hex_value(s[i + 1]) : -1;
    const int lo = complete ? hex_value(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) refuse(std::string("bad percent-escape in the ") + what);
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// A decimal number in [min, max], digits only (no sign, no spaces).
bool parse_number(std::string_view s, long long min, long long max, long long& out) {
  if (s.empty() || s.size() > 18) return false;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  std::from_chars(s.data(), s.data() + s.size(), out);
  return out >= min && out <= max;
}

int parse_db(std::string_view s) {
  long long db = 0;
  if (!parse_number(s, 0, INT_MAX, db)) {
    refuse("the database must be a number from 0 (got '" + std::string(s) + "')");
  }
  return static_cast<int>(db);
}

// `userinfo` is what came before '@': "user:password" or ":password".
void parse_userinfo(std::string_view userinfo, endpoint& e) {
  const auto colon = userinfo.find(':');
  if (colon == std::string_view::npos) {
    refuse("credentials must be user:password@ or :password@ (a user alone cannot log in)");
  }
  e.user = percent_decode(userinfo.substr(0, colon), "user");
  e.password = percent_decode(userinfo.substr(colon + 1), "password");
  if (e.password.empty()) refuse("the password is empty");
}

bool host_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

void parse_tcp(std::string_view rest, endpoint& e) {
  e.kind = endpoint::transport::tcp;
  if (rest.find_first_of("?#") != std::string_view::npos) {
    refuse("redis:// takes no query or fragment (the database goes in the path: /N)");
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);

  // The last '@': an unencoded '@' inside a password still parses the way it was meant.
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    parse_userinfo(authority.substr(0, at), e);
    authority.remove_prefix(at + 1);
  }

  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) refuse("an IPv6 address misses its ']'");
    const std::string_view address = authority.substr(1, close - 1);
    if (address.empty() || !std::all_of(address.begin(), address.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        })) {
      refuse("'" + std::string(address) + "' is not an IPv6 address");
    }
    e.host = address;
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') refuse("unexpected text after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) refuse("the port is empty");
    }
  } else {
    const auto colon = authority.find(':');
    if (colon != std::string_view::npos &&
        authority.find(':', colon + 1) != std::string_view::npos) {
      refuse("an IPv6 address must be in brackets: redis://[::1]:6379");
    }
    e.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) refuse("the port is empty");
    }
    if (e.host.empty()) refuse("the host is missing");
    if (!std::all_of(e.host.begin(), e.host.end(), host_name_char)) {
      refuse("'" + e.host + "' is not a host name");
    }
  }
  if (!port.empty()) {
    long long p = 0;
    if (!parse_number(port, 1, 65535, p)) {
      refuse("the port must be a number from 1 to 65535 (got '" + std::string(port) + "')");
    }
    e.port = static_cast<std::uint16_t>(p);
  }
  if (path.size() > 1) e.db = parse_db(path.substr(1));
}

void parse_unix(std::string_view rest, endpoint& e) {
  e.kind = endpoint::transport::unix_socket;
  if (rest.find('#') != std::string_view::npos) refuse("unix:// takes no fragment");
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) {
    refuse("the socket path is missing: unix:///path/to/redis.sock");
  }
  std::string_view authority = rest.substr(0, slash);
  if (!authority.empty()) {
    if (authority.back() != '@') {
      refuse("unix:// takes no host: unix:///path/to/redis.sock (three slashes)");
    }
    parse_userinfo(authority.substr(0, authority.size() - 1), e);
  }
  std::string_view path = rest.substr(slash);
  std::string_view query;
  if (const auto q = path.find('?'); q != std::string_view::npos) {
    query = path.substr(q + 1);
    path = path.substr(0, q);
  }
  if (path.size() < 2) refuse("the socket path is missing: unix:///path/to/redis.sock");
  if (path.back() == '/') refuse("the socket path names a directory");
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    refuse("the socket path is longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
           " bytes");
  }
  e.path = path;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
    if (param.substr(0, 3) != "db=") {
      refuse("unknown parameter '" + std::string(param.substr(0, param.find('='))) +
             "' (only db=N)");
    }
    e.db = parse_db(param.substr(3));
  }
}

}  // namespace

endpoint endpoint::parse(std::string_view url) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    refuse("expected redis://host:port[/db] or unix:///path/to/redis.sock");
  }
  const std::string scheme = lower(url.substr(0, sep));
  const std::string_view rest = url.substr(sep + 3);
  endpoint e;
  if (scheme == "redis") {
    parse_tcp(rest, e);
  } else if (scheme == "unix") {
    parse_unix(rest, e);
  } else if (scheme == "rediss") {
    refuse("TLS (rediss://) is not supported; use redis:// or unix://");
  } else {
    refuse("unsupported scheme '" + scheme + "' (expected redis:// or unix://)");
  }
  return e;
}

std::string endpoint::to_string() const {
  std::string credentials;
  if (!password.empty()) credentials = user + ":***@";
  if (kind == transport::unix_socket) {
    return "unix://" + credentials + path + (db != 0 ? "?db=" + std::to_string(db) : "");
  }
  const bool v6 = host.find(':') != std::string::npos;
  return "redis://" + credentials + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) +
         (db != 0 ? "/" + std::to_string(db) : "");
}

}  // namespace gatherd::core::redis
