// Where a Redis server is and how to log in: parsed from the `--backend` URL.
//   redis://[user:password@]host[:port][/db]     TCP; port 6379 by default; IPv6 as [::1]
//   unix://[user:password@]/path/to/redis.sock[?db=N]
// `:password@` (no user) authenticates as the default user. User and password may be
// percent-encoded (a password with '@', ':' or '/' in it). Anything else is refused with
// std::invalid_argument whose message says what is wrong: a typo in a flag should stop the
// process at start, not turn into a connection that can never succeed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gatherd::core::redis {

struct endpoint {
  enum class transport : std::uint8_t { tcp, unix_socket };

  transport kind = transport::tcp;
  std::string host;           // tcp: a name or an address (IPv6 without brackets)
  std::uint16_t port = 6379;  // tcp
  std::string path;           // unix_socket: an absolute path
  std::string user;           // empty: the default user
  std::string password;       // empty: no AUTH
  int db = 0;                 // SELECTed on connect when not 0

  static endpoint parse(std::string_view url);

  // The URL again, for logs: the password is never in it (shown as `***`).
  std::string to_string() const;

  bool operator==(const endpoint&) const = default;
};

}  // namespace gatherd::core::redis
