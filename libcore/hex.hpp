// Lowercase hexadecimal text of raw bytes (ids, digests): the one hex encoder.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace gatherd::core {

// Writes 2 * bytes.size() characters at `out`; returns the end.
inline char* write_hex(std::span<const std::uint8_t> bytes, char* out) {
  static constexpr char digits[] = "0123456789abcdef";
  for (std::uint8_t b : bytes) {
    *out++ = digits[b >> 4];
    *out++ = digits[b & 0xf];
  }
  return out;
}

inline std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out(bytes.size() * 2, '0');
  write_hex(bytes, out.data());
  return out;
}

}  // namespace gatherd::core
