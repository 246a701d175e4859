// Coroutines waiting, with a deadline, for a state change announced by someone else (connected,
// stopped). Each waiter lists its own timer; wake_all() cancels them. Single-threaded: strand only.
#pragma once

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"

namespace gatherd::core::redis {

class wake_list {
 public:
  // Returns at wake_all(), at `deadline`, or on cancellation; callers re-check their condition.
  awaitable<void> wait_until(steady_clock::time_point deadline) {
    net::steady_timer timer(co_await net::this_coro::executor, deadline);
    listing listed(timers_, &timer);
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  }

  void wake_all() {
    for (auto* t : timers_) t->cancel();
    timers_.clear();
  }

 private:
  // Keeps a timer listed exactly as long as it lives, however its wait ends (even when the
  // frame is destroyed unresumed, as at io_context teardown).
  struct listing {
    std::vector<net::steady_timer*>& list;
    net::steady_timer* timer;
    listing(std::vector<net::steady_timer*>& l, net::steady_timer* t) : list(l), timer(t) {
      list.push_back(timer);
    }
    ~listing() {
      if (auto it = std::find(list.begin(), list.end(), timer); it != list.end()) list.erase(it);
    }
  };

  std::vector<net::steady_timer*> timers_;
};

}  // namespace gatherd::core::redis
