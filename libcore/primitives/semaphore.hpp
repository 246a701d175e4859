// A named BoundedSemaphore with leases, as a plain state machine (no waiting, no clocks of its
// own): the coordinator drives it on its strand, parks waiters and wakes them when this grants.
//
// Permits are leased: each expires at its deadline unless kept alive, so a crashed holder cannot
// leak one. Waiters are served strictly FIFO. Every grant carries a fencing token that strictly
// increases per semaphore, for holders to pass on to what they guard. A reentrant acquire by a
// holder that already has a permit returns the same permit with its count raised.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "libcore/clock.hpp"

namespace gatherd::core {

struct acquire_request {
  std::string holder;
  millis ttl{30000};
  bool reentrant = false;
};

struct permit {
  std::string id;
  std::string holder;
  std::uint64_t fencing_token = 0;
  std::uint32_t count = 1;  // reentrant acquisitions not yet released
  steady_clock::time_point expires;
  wall_clock::time_point expires_at;  // the same instant, for clients
};

// A parked acquire, owned by the waiting coroutine. `granted` is filled by the semaphore, which
// then calls `wake`.
struct acquire_waiter {
  acquire_request request;
  std::optional<permit> granted;
  std::function<void()> wake;
};

class semaphore {
 public:
  // `tokens` (optional) is a fencing-token counter shared by every semaphore of a coordinator, so
  // tokens keep increasing for a name even when it is deleted and created again; `expiries`
  // (optional) counts every lease that ends unreleased.
  explicit semaphore(std::size_t permits, std::uint64_t* tokens = nullptr,
                     std::atomic<std::uint64_t>* expiries = nullptr)
      : permits_(permits), tokens_(tokens ? tokens : &own_tokens_), expiries_(expiries) {}

  // Changes the number of permits; waiters are served if that frees some. Holders above a
  // lowered limit keep their permits until they release them.
  void set_permits(std::size_t permits, steady_clock::time_point now);

  // A permit now if one is free and nobody waits before us (or a reentrant hit), else nullopt.
  std::optional<permit> try_acquire(const acquire_request& request, steady_clock::time_point now);

  // Parks a waiter at the back of the FIFO line, or takes it out (it gave up).
  void enqueue(acquire_waiter& waiter) { waiters_.push_back(&waiter); }
  void dequeue(acquire_waiter& waiter) { waiters_.remove(&waiter); }

  // Releases one acquisition of the permit (a reentrant permit needs as many releases as it had
  // acquisitions). Throws not_held for an unknown or expired permit.
  // Returns the acquisitions the permit still holds (0: it was freed).
  std::uint32_t release(const std::string& permit_id, steady_clock::time_point now);
  // Moves the permit's deadline to now + ttl. Throws not_held.
  permit keepalive(const std::string& permit_id, millis ttl, steady_clock::time_point now);

  // Frees every permit whose lease ended by `now` (waiters are served); returns how many.
  std::size_t expire(steady_clock::time_point now);
  std::optional<steady_clock::time_point> next_expiry() const;

  // Every parked waiter, for when the semaphore is deleted.
  std::vector<acquire_waiter*> take_waiters();

  std::size_t permits() const { return permits_; }
  std::size_t available() const {
    return holders_.size() >= permits_ ? 0 : permits_ - holders_.size();
  }
  const std::vector<permit>& holders() const { return holders_; }
  std::size_t waiters() const { return waiters_.size(); }

 private:
  permit grant(const acquire_request& request, steady_clock::time_point now);
  void serve_waiters(steady_clock::time_point now);
  std::vector<permit>::iterator find(const std::string& permit_id);

  std::size_t permits_;
  std::vector<permit> holders_;
  std::list<acquire_waiter*> waiters_;
  std::uint64_t own_tokens_ = 0;
  std::uint64_t* tokens_;
  std::atomic<std::uint64_t>* expiries_;
};

}  // namespace gatherd::core
