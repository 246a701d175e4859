// A named bounded queue with at-least-once delivery (asyncio.Queue plus leases): put is all or
// nothing and waits for room; get hands items out under a lease with a receipt; an item whose
// lease ends before `done` goes back to the front of the queue; join waits until every item put
// is done. Leased items do not count toward maxsize. A plain state machine: the coordinator parks
// and wakes the waiting coroutines.
//
// Bytes: each item's payload size (payload_bytes.hpp) is counted once when it is put, and the
// queue keeps a running total of its items, ready and leased (a leased item is still held until
// it is done). A put fits only within the queue's own `max_bytes` and the budget shared by every
// queue of the coordinator, besides maxsize.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
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

struct queue_item {
  nlohmann::json value;
  std::size_t bytes = 0;  // payload_bytes(value), counted once when it is put
};

// Bytes of the items of every queue of a coordinator, against one budget. Changed on the
// coordinator's strand only; atomic for metrics to read.
struct queue_bytes_budget {
  std::size_t max = std::numeric_limits<std::size_t>::max();
  std::atomic<std::size_t> used{0};
  bool has_room(std::size_t bytes) const {
    const std::size_t now = used.load(std::memory_order_relaxed);
    return now <= max && bytes <= max - now;
  }
};

// What keeps a put out, on its own terms (earlier puts aside).
enum class put_blocker : std::uint8_t { none, count, bytes, shared_bytes };

struct put_waiter {
  std::vector<queue_item> items;
  std::size_t bytes = 0;
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
  // `shared` (optional) is the budget of every queue together; `expiries` (optional) counts
  // every lease that ends without `done`.
  explicit work_queue(std::size_t maxsize,
                      std::size_t max_bytes = std::numeric_limits<std::size_t>::max(),
                      queue_bytes_budget* shared = nullptr,
                      std::atomic<std::uint64_t>* expiries = nullptr)
      : maxsize_(maxsize), max_bytes_(max_bytes), shared_(shared), expiries_(expiries) {}
  ~work_queue();  // gives its bytes back to the shared budget
  work_queue(const work_queue&) = delete;
  work_queue& operator=(const work_queue&) = delete;

  // All the items (of `bytes` in all), now, if they fit and no earlier put waits; else false
  // (nothing is added).
  bool try_put(std::vector<queue_item>& items, std::size_t bytes);
  // Why `n` items of `bytes` would not fit now, earlier puts aside (none: they would).
  put_blocker blocker(std::size_t n, std::size_t bytes) const;
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
  // Serves waiting puts that fit now (the shared budget may have room again).
  void retry_puts() { serve(steady_clock::now()); }

  void set_limits(std::size_t maxsize, std::size_t max_bytes);
  std::size_t maxsize() const { return maxsize_; }
  std::size_t max_bytes() const { return max_bytes_; }
  std::size_t bytes() const { return bytes_; }  // of every item, ready and leased
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
    queue_item item;
    steady_clock::time_point expires;
  };
  bool fits(std::size_t n, std::size_t bytes) const {
    return blocker(n, bytes) == put_blocker::none;
  }
  void add(std::vector<queue_item>& items, std::size_t bytes);
  void forget(std::size_t bytes);  // items done: their bytes are free
  std::vector<delivery> take(std::size_t max_items, millis lease, steady_clock::time_point now);
  void serve(steady_clock::time_point now);  // puts that fit, gets that can take, joins

  std::size_t maxsize_;
  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  queue_bytes_budget* shared_;
  std::atomic<std::uint64_t>* expiries_;
  std::deque<queue_item> ready_;
  std::unordered_map<std::string, lease> leases_;  // by receipt
  std::list<put_waiter*> puts_;
  std::list<get_waiter*> gets_;
  std::list<join_waiter*> joins_;
};

}  // namespace gatherd::core
