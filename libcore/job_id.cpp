#include "libcore/job_id.hpp"

#include <openssl/rand.h>

#include <stdexcept>

#include "libcore/hex.hpp"

namespace gatherd::core {

job_id job_id::random() {
  job_id id;
  if (RAND_bytes(id.bytes.data(), static_cast<int>(id.bytes.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return id;
}

std::optional<job_id> job_id::parse(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  job_id id;
  for (std::size_t i = 0; i < 16; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return id;
}

std::string job_id::to_string() const {
  return to_hex(bytes);
}

}  // namespace gatherd::core
