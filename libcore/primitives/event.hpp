// A named asyncio.Event: set wakes every waiter, clear resets, wait returns at once while set.
// A plain state machine; the coordinator parks and wakes the waiting coroutines.
#pragma once

#include <functional>
#include <list>

namespace gatherd::core {

struct event_waiter {
  bool woken = false;
  std::function<void()> wake;
};

class event {
 public:
  void set() {
    is_set_ = true;
    auto waiting = std::move(waiters_);
    waiters_.clear();
    for (event_waiter* w : waiting) {
      w->woken = true;
      if (w->wake) w->wake();
    }
  }
  void clear() { is_set_ = false; }
  // Ends every wait without setting (shutdown): the waiters answer "not set".
  void wake_all() {
    auto waiting = std::move(waiters_);
    waiters_.clear();
    for (event_waiter* w : waiting)
      if (w->wake) w->wake();
  }
  bool is_set() const { return is_set_; }

  void enqueue(event_waiter& w) { waiters_.push_back(&w); }
  void dequeue(event_waiter& w) { waiters_.remove(&w); }
  std::size_t waiters() const { return waiters_.size(); }

 private:
  bool is_set_ = false;
  std::list<event_waiter*> waiters_;
};

}  // namespace gatherd::core
