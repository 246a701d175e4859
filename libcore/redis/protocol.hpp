// RESP2 on the wire, through hiredis 0.14 (Debian 12's only Redis client library): it encodes
// commands and decodes replies; the sockets, timing and matching of replies are ours
// (connection.hpp). hiredis stays out of every other header.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "libcore/redis/reply.hpp"

struct redisReader;

namespace gatherd::core::redis {

// One command as RESP bytes (`*<n>\r\n$<len>\r\n<arg>\r\n...`); arguments are binary-safe.
// Precondition: !args.empty().
std::string format_command(std::span<const std::string> args);

// Turns bytes as they arrive, in pieces of any size, into whole replies, in order.
// Not thread-safe; one per connection.
class reply_parser {
 public:
  reply_parser();
  ~reply_parser();
  reply_parser(const reply_parser&) = delete;
  reply_parser& operator=(const reply_parser&) = delete;

  // Throws redis::error (protocol) if the bytes cannot be RESP2.
  void feed(const char* data, std::size_t size);

  // The next whole reply, if the bytes fed so far complete one; throws redis::error (protocol).
  std::optional<reply> next();

 private:
  struct free_reader {
    void operator()(redisReader* r) const;
  };
  std::unique_ptr<redisReader, free_reader> reader_;
};

}  // namespace gatherd::core::redis
