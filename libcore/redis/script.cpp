#include "libcore/redis/script.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace gatherd::core::redis {

namespace {

std::string sha1_hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha1(), nullptr) != 1) {
    throw std::runtime_error("SHA1 of a Lua script failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

}  // namespace

script::script(std::string source) : source_(std::move(source)), sha1_(sha1_hex(source_)) {}

awaitable<reply> script::run(connection& c, std::vector<std::string> keys,
                             std::vector<std::string> args) const {
  std::vector<std::string> call{"EVALSHA", sha1_, std::to_string(keys.size())};
  call.insert(call.end(), keys.begin(), keys.end());
  call.insert(call.end(), args.begin(), args.end());
  reply r = co_await c.command(call);
  if (r.is_error() && r.error_message().starts_with("NOSCRIPT")) {
    co_await c.command("SCRIPT", "LOAD", source_);
    r = co_await c.command(std::move(call));
  }
  co_return r;
}

}  // namespace gatherd::core::redis
