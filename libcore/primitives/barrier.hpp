// A named asyncio.Barrier: `parties` waiters are released together, each with the barrier's
// generation and its 0-based arrival index; a waiter whose time runs out leaves without
// breaking the others. A plain state machine driven by the coordinator.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <optional>

namespace gatherd::core {

struct barrier_pass {
  std::uint64_t generation = 0;
  std::size_t arrival = 0;
};

struct barrier_waiter {
  std::optional<barrier_pass> passed;
  std::function<void()> wake;
};

class barrier {
 public:
  explicit barrier(std::size_t parties) : parties_(parties) {}

  // Arrives: parks `w`, and if that completes the party, releases everyone (w included).
  void arrive(barrier_waiter& w) {
    waiting_.push_back(&w);
    release_if_full();
  }
  void leave(barrier_waiter& w) { waiting_.remove(&w); }
  // Ends every wait without passing (shutdown): the waiters time out.
  void wake_all() {
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (barrier_waiter* w : waiting)
      if (w->wake) w->wake();
  }

  void set_parties(std::size_t parties) {
    parties_ = parties;
    release_if_full();
  }
  std::size_t parties() const { return parties_; }
  std::size_t waiting() const { return waiting_.size(); }
  std::uint64_t generation() const { return generation_; }

 private:
  void release_if_full() {
    if (waiting_.size() < parties_) return;
    auto released = std::move(waiting_);
    waiting_.clear();
    std::size_t arrival = 0;
    for (barrier_waiter* w : released) {
      w->passed = barrier_pass{generation_, arrival++};
      if (w->wake) w->wake();
    }
    ++generation_;
  }

  std::size_t parties_;
  std::list<barrier_waiter*> waiting_;
  std::uint64_t generation_ = 0;
};

}  // namespace gatherd::core
