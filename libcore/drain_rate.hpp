// How fast something drains, from the times of its last departures: what a 429's Retry-After
// says ("room is likely again in ..."). Not thread-safe: used from its owner's strand.
#pragma once

#include <array>
#include <cstddef>
#include <optional>

#include "libcore/clock.hpp"

namespace gatherd::core {

class drain_rate {
 public:
  void record(steady_clock::time_point now) {
    times_[next_] = now;
    next_ = (next_ + 1) % window;
    if (count_ < window) ++count_;
  }

  // How long `n` more departures take at the recent rate: the last `window` departures over the
  // time from the oldest of them to `now` (so a drain that stalls looks slower as time passes).
  // None before two departures: nothing to measure yet.
  std::optional<millis> time_for(std::size_t n, steady_clock::time_point now) const {
    if (count_ < 2) return std::nullopt;
    const auto oldest = times_[count_ < window ? 0 : next_];
    const auto span = std::chrono::duration_cast<millis>(now - oldest);
    return millis{(span.count() * static_cast<std::int64_t>(n) + count_ - 1) /
                  static_cast<std::int64_t>(count_)};
  }

  static constexpr std::size_t window = 64;

 private:
  std::array<steady_clock::time_point, window> times_{};
  std::size_t next_ = 0;
  std::size_t count_ = 0;
};

}  // namespace gatherd::core
