// `compute`: CPU-bound work on the worker pool, in chunks of a few milliseconds so that a
// cancellation lands between two chunks.
#pragma once

#include "libcore/asio.hpp"
#include "libcore/job.hpp"
#include "libcore/kinds/attempt_context.hpp"

namespace gatherd::core {

awaitable<json> run_compute(const compute_params& params, attempt_context ctx);

// The pieces, exposed for unit tests and benchmarks.
class prime_counter {  // segmented sieve of Eratosthenes over [2, n]
 public:
  explicit prime_counter(std::uint64_t n);
  bool done() const { return low_ > n_; }
  void step();  // sieves the next segment
  std::uint64_t count() const { return count_; }

 private:
  std::uint64_t n_;
  std::uint64_t low_ = 2;
  std::uint64_t count_ = 0;
  std::vector<std::uint32_t> base_primes_;  // primes <= sqrt(n)
  std::vector<std::uint8_t> segment_;
};

class sha256_chain {  // round 1 hashes `data`, each later round the previous raw digest
 public:
  sha256_chain(const std::string& data, std::uint64_t rounds);
  bool done() const { return started_ && remaining_ == 0; }
  void step();  // a bounded number of rounds
  std::string hex() const;

 private:
  std::string data_;  // hashed by the first step, then dropped
  std::array<unsigned char, 32> digest_{};
  std::uint64_t remaining_;
  bool started_ = false;
};

}  // namespace gatherd::core
