// The wait before the next reconnect attempt: capped exponential with jitter, so replicas that
// lost Redis together do not all knock at the same instant when it comes back.
#pragma once

#include <algorithm>
#include <random>

#include "libcore/clock.hpp"

namespace gatherd::core::redis {

class backoff {
 public:
  backoff(millis min, millis max)
      : min_(std::max(min, millis{1})),
        max_(std::max(max, min_)),
        step_(min_),
        rng_(std::random_device{}()) {}

  // A random wait in [step/2, step]; the step doubles for the next call, up to max.
  millis next() {
    const millis now = step_;
    step_ = std::min(step_ * 2, max_);
    std::uniform_int_distribution<millis::rep> pick(now.count() / 2, now.count());
    return millis{pick(rng_)};
  }

  void reset() { step_ = min_; }

 private:
  millis min_;
  millis max_;
  millis step_;
  std::minstd_rand rng_;
};

}  // namespace gatherd::core::redis
