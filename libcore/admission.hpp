// Admission control: a fair FIFO semaphore of `max_running` run slots in front of a bounded
// queue of `max_queued` waiters. A job is admitted (given a ticket) only if it fits in one or
// the other; otherwise the caller refuses it with `queue_full`. Single-threaded: use it from
// the engine's strand only.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <optional>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"
#include "libcore/drain_rate.hpp"

namespace gatherd::core {

class admission {
 public:
  class ticket {
   public:
    bool granted() const { return granted_; }

   private:
    friend class admission;
    // Cancelled to wake the waiter; made only for a ticket that queues (most never do).
    std::optional<net::steady_timer> wakeup_;
    bool granted_ = false;
    bool queued_ = false;
    std::list<ticket*>::iterator position_;
  };

  // `ex`: where queued tickets' waits run (the engine's strand).
  admission(std::size_t max_running, std::size_t max_queued, executor ex)
      : max_running_(max_running), max_queued_(max_queued), executor_(std::move(ex)) {}

  // Whether `n` more jobs fit in free run slots plus free queue places.
  bool has_room(std::size_t n) const {
    return (max_running_ - running_) + (max_queued_ - queue_.size()) >= n;
  }

  // Precondition: has_room(1). Grants a slot at once when one is free, else queues in FIFO order.
  std::unique_ptr<ticket> admit();

  // Completes when the ticket holds a slot. Throws operation_aborted when the waiting
  // coroutine is cancelled or the ticket was withdrawn first.
  awaitable<void> wait(ticket& t);

  // Takes a queued ticket out of the line (cancel while queued); no effect otherwise.
  void withdraw(ticket& t);

  // Gives a granted ticket's slot to the first in line; no effect on a ticket without one.
  void release(ticket& t);

  // When `n` more jobs are likely to fit, at the rate slots were released lately (a refusal's
  // Retry-After); none before there is a rate to go by.
  std::optional<millis> time_until_room(std::size_t n) const {
    const std::size_t room = (max_running_ - running_) + (max_queued_ - queue_.size());
    return n <= room ? millis{0} : released_.time_for(n - room, steady_clock::now());
  }

  std::size_t running() const { return running_; }
  std::size_t queued() const { return queue_.size(); }

 private:
  std::size_t max_running_;
  std::size_t max_queued_;
  executor executor_;
  std::size_t running_ = 0;
  std::list<ticket*> queue_;
  drain_rate released_;
};

}  // namespace gatherd::core
