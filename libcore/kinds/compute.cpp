#include "libcore/kinds/compute.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <cmath>

#include "libcore/hex.hpp"
#include "libcore/worker_pool.hpp"

namespace gatherd::core {

namespace {
constexpr std::uint64_t segment_size = 1 << 18;   // ~1 ms of sieving
constexpr std::uint64_t rounds_per_step = 20000;  // ~2-5 ms of hashing
}  // namespace

prime_counter::prime_counter(std::uint64_t n) : n_(n) {
  const auto root = static_cast<std::uint64_t>(std::sqrt(static_cast<long double>(n))) + 1;
  std::vector<bool> composite(root + 1, false);
  for (std::uint64_t i = 2; i <= root; ++i) {
    if (composite[i]) continue;
    base_primes_.push_back(static_cast<std::uint32_t>(i));
    for (std::uint64_t j = i * i; j <= root; j += i) composite[j] = true;
  }
}

void prime_counter::step() {
  if (done()) return;
  const std::uint64_t high = std::min(n_, low_ + segment_size - 1);
  segment_.assign(high - low_ + 1, 1);
  for (std::uint64_t p : base_primes_) {
    if (p * p > high) break;
    std::uint64_t start = std::max(p * p, (low_ + p - 1) / p * p);
    for (std::uint64_t j = start; j <= high; j += p) segment_[j - low_] = 0;
  }
  count_ += static_cast<std::uint64_t>(std::count(segment_.begin(), segment_.end(), 1));
  low_ = high + 1;
}

sha256_chain::sha256_chain(const std::string& data, std::uint64_t rounds)
    : data_(data), remaining_(rounds) {}

void sha256_chain::step() {
  if (!started_) {
    started_ = true;
    if (remaining_ == 0) return;
    SHA256(reinterpret_cast<const unsigned char*>(data_.data()), data_.size(), digest_.data());
    data_ = std::string();
    --remaining_;
  }
  for (std::uint64_t i = 0; i < rounds_per_step && remaining_ > 0; ++i, --remaining_) {
    SHA256(digest_.data(), digest_.size(), digest_.data());
  }
}

std::string sha256_chain::hex() const {
  return to_hex(digest_);
}

awaitable<json> run_compute(const compute_params& params, attempt_context ctx) {
  // The state lives in this frame; a worker touches it only while this coroutine is suspended.
  if (params.op == compute_params::operation::primes) {
    prime_counter counter(params.n);
    while (!counter.done())
      co_await ctx.pool.run([&counter] {
        counter.step();
        return 0;
      });
    co_return json{{"count", counter.count()}};
  }
  sha256_chain chain(params.data, params.rounds);
  while (!chain.done())
    co_await ctx.pool.run([&chain] {
      chain.step();
      return 0;
    });
  co_return json{{"hex", chain.hex()}};
}

}  // namespace gatherd::core
