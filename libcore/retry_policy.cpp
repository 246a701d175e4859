#include "libcore/retry_policy.hpp"

#include <algorithm>
#include <cmath>

namespace gatherd::core {

millis retry_policy::backoff_ceiling(int failed_attempt) const {
  const double exponent = std::max(0, failed_attempt - 1);
  const double ms = static_cast<double>(initial_backoff.count()) * std::pow(multiplier, exponent);
  const double capped = std::min(ms, static_cast<double>(max_backoff.count()));
  return millis{static_cast<millis::rep>(capped)};
}

millis retry_policy::backoff(int failed_attempt, std::mt19937_64& rng) const {
  const millis ceiling = backoff_ceiling(failed_attempt);
  if (!jitter || ceiling.count() <= 0) return ceiling;
  std::uniform_int_distribution<millis::rep> pick(0, ceiling.count());
  return millis{pick(rng)};
}

}  // namespace gatherd::core
