// Job identifiers: 128 random bits from OpenSSL's CSPRNG, written as 32 lowercase hex digits.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace gatherd::core {

struct job_id {
  std::array<std::uint8_t, 16> bytes{};

  static job_id random();
  static std::optional<job_id> parse(std::string_view hex);
  std::string to_string() const;

  friend bool operator==(const job_id&, const job_id&) = default;
};

struct job_id_hash {
  using is_avalanching = void;  // tells boost::unordered_flat_map not to mix the bits again
  std::size_t operator()(const job_id& id) const noexcept {
    std::size_t h;  // the bytes are uniformly random already
    std::memcpy(&h, id.bytes.data(), sizeof h);
    return h;
  }
};

}  // namespace gatherd::core
