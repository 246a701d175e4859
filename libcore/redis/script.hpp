// A Lua script run by its SHA1 (EVALSHA), so a call sends the hash, not the source; when Redis
// does not know it (first use, a restart, SCRIPT FLUSH) it is loaded and the call made again.
#pragma once

#include <string>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/redis/connection.hpp"
#include "libcore/redis/reply.hpp"

namespace gatherd::core::redis {

class script {
 public:
  explicit script(std::string source);

  // The script's reply (an error reply included); throws as connection::command does.
  awaitable<reply> run(connection& c, std::vector<std::string> keys,
                       std::vector<std::string> args) const;

  const std::string& sha1() const { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;  // lower-case hex, as Redis names scripts
};

}  // namespace gatherd::core::redis
