// One RESP2 reply as a plain value: nil, integer, status (+OK), error (-ERR ...), bulk string or
// an array of replies. Decoded from the wire by reply_parser (protocol.hpp); owns its data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gatherd::core::redis {

class reply {
 public:
  enum class kind : std::uint8_t { nil, integer, status, error, string, array };

  reply() = default;  // nil
  static reply make_integer(long long value);
  static reply make_status(std::string text);
  static reply make_error(std::string text);
  static reply make_string(std::string bytes);
  static reply make_array(std::vector<reply> elements);

  kind type() const { return kind_; }
  bool is_nil() const { return kind_ == kind::nil; }
  bool is_integer() const { return kind_ == kind::integer; }
  bool is_status() const { return kind_ == kind::status; }
  bool is_error() const { return kind_ == kind::error; }
  bool is_string() const { return kind_ == kind::string; }
  bool is_array() const { return kind_ == kind::array; }

  // The value as the type the caller expects. Each throws redis::error: server_error (with
  // Redis's text) for an error reply, unexpected_reply for any other type.
  long long as_integer() const;
  const std::string& as_string() const;  // a bulk string or a status
  const std::vector<reply>& as_array() const;

  // The text of an error reply ("ERR wrong number of arguments ..."); empty for other types.
  const std::string& error_message() const;

  // Short and printable, for test failures and logs: `(integer) 3`, `"abc"`, `(error) ERR ...`.
  std::string describe() const;

  bool operator==(const reply&) const = default;

 private:
  kind kind_ = kind::nil;
  long long integer_ = 0;
  std::string text_;  // bulk string, status or error
  std::vector<reply> elements_;
};

std::string_view to_string(reply::kind k);

}  // namespace gatherd::core::redis
