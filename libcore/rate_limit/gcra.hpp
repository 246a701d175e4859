// The Generic Cell Rate Algorithm as a shaper: a request may start once its theoretical arrival
// time (TAT) minus the burst tolerance has come; each start pushes the TAT one interval on.
// `burst` requests may start at once, then one every 1/per_second.
#pragma once

#include <algorithm>
#include <chrono>

#include "libcore/clock.hpp"

namespace gatherd::core {

struct rate {
  double per_second = 0;  // > 0
  int burst = 1;          // >= 1
  friend bool operator==(const rate&, const rate&) = default;
};

class gcra {
 public:
  using time_point = steady_clock::time_point;
  using duration = steady_clock::duration;

  explicit gcra(rate r)
      : interval_(std::chrono::duration_cast<duration>(
            std::chrono::duration<double>(1.0 / r.per_second))),
        tolerance_(interval_ * (std::max(r.burst, 1) - 1)),
        catch_up_(std::max<duration>(interval_, std::chrono::milliseconds(25))) {}

  // When the next request may start (in the past when one may start now).
  time_point next_start() const { return tat_ - tolerance_; }
  bool conforms(time_point now) const { return next_start() <= now; }

  // A request that found nobody waiting starts now (call only when conforms(now)).
  void start_now(time_point now) { tat_ = std::max(tat_, now) + interval_; }

  // A queued request starts at a timer's wake-up, which is always late, by microseconds or, on
  // a busy machine, by milliseconds: the schedule keeps its slots (no drift at 1,000/s) and
  // catches up what the timer lost, but never more than `catch_up` (the larger of one interval
  // and 25 ms), so a long stall does not turn into a burst.
  void start_queued(time_point now) { tat_ = std::max(tat_, now - catch_up_) + interval_; }

  // Nobody would notice if this limiter were forgotten and made anew.
  bool idle(time_point now) const { return tat_ <= now; }

  duration interval() const { return interval_; }

 private:
  duration interval_;
  duration tolerance_;
  duration catch_up_;
  time_point tat_{};
};

}  // namespace gatherd::core
