// Exponential backoff between attempts, with optional full jitter.
#pragma once

#include <random>

#include "libcore/clock.hpp"

namespace gatherd::core {

struct retry_policy {
  int max_attempts = 1;  // no `retry` object: one attempt
  millis initial_backoff{100};
  double multiplier = 2.0;
  millis max_backoff{10000};
  bool jitter = true;

  // The policy a partial `retry` object starts from (proto/openapi.yaml, RetryPolicy).
  static retry_policy with_defaults() { return {3, millis{100}, 2.0, millis{10000}, true}; }

  // Ceiling of the wait before attempt `failed_attempt + 1`:
  // min(max_backoff, initial_backoff * multiplier^(failed_attempt - 1)).
  millis backoff_ceiling(int failed_attempt) const;

  // The wait itself: the ceiling, or uniform in [0, ceiling] with full jitter.
  millis backoff(int failed_attempt, std::mt19937_64& rng) const;
};

}  // namespace gatherd::core
