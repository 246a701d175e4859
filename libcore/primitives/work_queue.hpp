// A named bounded queue with at-least-once delivery (asyncio.Queue plus leases): put is all or
// nothing and waits for room; get hands items out under a lease with a receipt; an item whose
// lease ends before `done` goes back to the front of the queue; join waits until every item put
// is done. Leased items do not count toward maxsize. A plain state machine: the coordinator parks
// and wakes the waiting coroutines.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "libcore/clock.hpp"

namespace gatherd::core {

struct delivery {
  std::string receipt;
  nlohmann::json value;
};

struct put_waiter {
  std::vector<nlohmann::json> items;
  bool done = false;
  std::function<void()> wake;
};

struct get_waiter {
  std::size_t max_items = 1;
  millis lease{30000};
  std::vector<delivery> got;
  std::function<void()> wake;
};

struct join_waiter {
  bool done = false;
  std::function<void()> wake;
};

class work_queue {
 public:
  // `expiries` (optional) counts every lease that ends without `done`.
  explicit work_queue(std::size_t maxsize, std::atomic<std::uint64_t>* expiries = nullptr)
      : maxsize_(maxsize), expiries_(expiries) {}

  // All the items, now, if they fit and no earlier put waits; else false (nothing is added).
  bool try_put(std::vector<nlohmann::json>& items);
  // Up to max_items under a lease, now; empty if none is ready or earlier gets wait.
  std::vector<delivery> try_get(std::size_t max_items, millis lease, steady_clock::time_point now);
  // Acknowledges delivered items; returns the receipts that were not (or no longer) leased.
  std::vector<std::string> done(const std::vector<std::string>& receipts);

  void enqueue(put_waiter& w) { puts_.push_back(&w); }
  void dequeue(put_waiter& w) { puts_.remove(&w); }
  void enqueue(get_waiter& w) { gets_.push_back(&w); }
  void dequeue(get_waiter& w) { gets_.remove(&w); }
  void enqueue(join_waiter& w) { joins_.push_back(&w); }
  void dequeue(join_waiter& w) { joins_.remove(&w); }

  // Items handed out to a caller that was gone by then: back to the front, at once.
  void give_back(const std::vector<delivery>& items);
  // Leases that ended by `now` put their items back at the front; returns how many.
  std::size_t expire(steady_clock::time_point now);
  std::optional<steady_clock::time_point> next_expiry() const;

  void set_maxsize(std::size_t maxsize);
  std::size_t maxsize() const { return maxsize_; }
  std::size_t size() const { return ready_.size(); }
  std::size_t leased() const { return leases_.size(); }
  std::size_t unfinished() const { return ready_.size() + leases_.size(); }
  std::size_t waiters() const { return puts_.size() + gets_.size() + joins_.size(); }
  std::size_t put_waiters() const { return puts_.size(); }
  std::size_t get_waiters() const { return gets_.size(); }

  // Everyone parked, for when the queue is deleted (their wait ends unanswered).
  void wake_all();

 private:
  struct lease {
    nlohmann::json value;
    steady_clock::time_point expires;
  };
  bool fits(std::size_t n) const { return ready_.size() + n <= maxsize_; }
  std::vector<delivery> take(std::size_t max_items, millis lease, steady_clock::time_point now);
  void serve(steady_clock::time_point now);  // puts that fit, gets that can take, joins

  std::size_t maxsize_;
  std::atomic<std::uint64_t>* expiries_;
  std::deque<nlohmann::json> ready_;
  std::unordered_map<std::string, lease> leases_;  // by receipt
  std::list<put_waiter*> puts_;
  std::list<get_waiter*> gets_;
  std::list<join_waiter*> joins_;
};

}  // namespace gatherd::core
