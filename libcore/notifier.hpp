// Wakes coroutines that wait, with a deadline, for a condition owned by someone else
// (a job reaching a terminal state, the engine going idle). Single-threaded: strand only.
#pragma once

#include <vector>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"

namespace gatherd::core {

class notifier {
 public:
  // Returns at notify_all(), at `deadline`, or on cancellation; callers re-check their condition.
  awaitable<void> wait_until(steady_clock::time_point deadline);
  void notify_all();

 private:
  std::vector<net::steady_timer*> waiters_;
};

}  // namespace gatherd::core
