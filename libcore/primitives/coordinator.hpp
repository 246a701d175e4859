// Named coordination primitives shared between processes: asyncio's Semaphore, Lock, Event,
// Barrier and Queue, with leases. Like the engine, the coordinator owns its state on one strand
// and every public call hops onto it. Waits end at their deadline, when served, or when the
// caller is cancelled (its client went away): a waiter then leaves no trace, and a permit or
// items granted in that same instant are given back.
//
// Reads never create: a primitive exists from a write (PUT, acquire, set, clear, put) until it is
// deleted or has been idle for `idle_timeout`. Idle means forgetting it loses nothing a client
// could not restore: no holder, no waiter, no item, and for an event, not set (a set event is a
// fact its later waiters rely on, kept like a key without a TTL). Idle primitives wait in one list
// ordered by when they became idle, so the sweep costs what it reclaims, not what exists.
#pragma once

#include <array>
#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/notifier.hpp"
#include "libcore/primitives/barrier.hpp"
#include "libcore/primitives/event.hpp"
#include "libcore/primitives/primitive_error.hpp"
#include "libcore/primitives/semaphore.hpp"
#include "libcore/primitives/work_queue.hpp"

namespace gatherd::core {

struct coordinator_config {
  std::size_t max_primitives = 10000;  // of every type together
  std::size_t max_waiters = 1000;      // per primitive
  millis idle_timeout{600000};         // idle primitives are forgotten after this; 0: never
  std::size_t queue_max_bytes = std::size_t{64} << 20;    // items of one queue (its default)
  std::size_t queues_max_bytes = std::size_t{256} << 20;  // items of every queue together
};

// Names: [A-Za-z0-9_.-]{1,128}.
bool valid_primitive_name(std::string_view name);

enum class primitive_type : std::uint8_t { semaphore, lock, event, barrier, queue };
inline constexpr primitive_type all_primitive_types[] = {
    primitive_type::semaphore, primitive_type::lock, primitive_type::event, primitive_type::barrier,
    primitive_type::queue};
std::string_view to_string(primitive_type t);

struct semaphore_info {
  std::string name;
  std::size_t permits = 0, available = 0, waiters = 0;
  std::vector<permit> holders;
};
struct event_info {
  std::string name;
  bool set = false;
  std::size_t waiters = 0;
};
struct barrier_info {
  std::string name;
  std::size_t parties = 0, waiting = 0;
  std::uint64_t generation = 0;
};
struct queue_info {
  std::string name;
  std::size_t maxsize = 0, size = 0, leased = 0, unfinished = 0, put_waiters = 0, get_waiters = 0;
  std::size_t max_bytes = 0, bytes = 0;  // payload bytes of its items, ready and leased
};

// Counts for metrics, readable from any thread.
struct coordinator_stats {
  std::array<std::atomic<std::size_t>, std::size(all_primitive_types)> primitives{};
  std::atomic<std::size_t> waiters{0};
  std::atomic<std::uint64_t> lease_expiries{0};
  std::atomic<std::size_t> queued_items{0};  // ready and leased, every queue together
  queue_bytes_budget queue_bytes;            // their payload bytes, against queues_max_bytes
  // Primitives forgotten after idle_timeout, by type (deletes and wait-only events not counted).
  std::array<std::atomic<std::uint64_t>, std::size(all_primitive_types)> expired{};
};

class coordinator {
 public:
  coordinator(executor io, coordinator_config config);
  ~coordinator();

  void start();  // the lease sweeper
  // Ends the sweeper and every wait (waiters answer as at their timeout); returns once the
  // sweeper is gone. Call before the io_context stops: nothing of the coordinator is left running.
  awaitable<void> shutdown();

  // Semaphores, and locks (`lock`: /v1/locks, one permit, created on first use).
  awaitable<semaphore_info> put_semaphore(std::string name, std::size_t permits);
  awaitable<semaphore_info> put_lock(std::string name);  // creates it if absent
  // An absent lock reads as a free one (and is not created); an absent semaphore is not_found.
  awaitable<semaphore_info> get_semaphore(std::string name, bool lock);
  awaitable<permit> acquire(std::string name, bool lock, acquire_request request, millis wait);
  // Returns the acquisitions the permit still holds (0: freed).
  awaitable<std::uint32_t> release(std::string name, bool lock, std::string permit_id);
  awaitable<permit> keepalive(std::string name, bool lock, std::string permit_id, millis ttl);
  awaitable<void> remove_semaphore(std::string name, bool lock);

  // Events (created on first write).
  awaitable<event_info> put_event(std::string name);
  // Sets it (waking every waiter), clears it, or neither (creates it on first use).
  awaitable<event_info> set_event(std::string name, bool set, bool clear = false);
  // true as soon as it is set, false at the timeout. An absent event is not set: with no wait
  // nothing is created; a waiter makes one that lasts while someone waits on it (unless a write
  // keeps it).
  awaitable<bool> wait_event(std::string name, millis wait);
  awaitable<void> remove_event(std::string name);

  // Barriers.
  awaitable<barrier_info> put_barrier(std::string name, std::size_t parties);
  awaitable<barrier_info> get_barrier(std::string name);
  awaitable<barrier_pass> wait_barrier(std::string name, millis wait);
  awaitable<void> remove_barrier(std::string name);

  // Queues. `max_bytes` defaults to config's queue_max_bytes.
  awaitable<queue_info> put_queue(std::string name, std::size_t maxsize,
                                  std::optional<std::size_t> max_bytes = std::nullopt);
  awaitable<queue_info> get_queue(std::string name);
  // Items are sized (payload_bytes) on the caller's thread; more than the queue's max_bytes (or
  // the server's budget) in one put is item_too_large, a put that finds no room within `wait`
  // queue_full, queue_bytes_full or queues_memory_full.
  awaitable<void> put_items(std::string name, std::vector<nlohmann::json> items, millis wait);
  awaitable<std::vector<delivery>> get_items(std::string name, std::size_t max_items, millis wait,
                                             millis lease);
  // Returns the receipts that were not (or no longer) leased.
  awaitable<std::vector<std::string>> done_items(std::string name,
                                                 std::vector<std::string> receipts);
  // Items delivered to a caller that could not receive them: back to the front at once.
  awaitable<void> return_items(std::string name, std::vector<std::string> receipts);
  // The unfinished count once it reaches 0, or at the timeout.
  awaitable<std::size_t> join_queue(std::string name, millis wait);
  awaitable<void> remove_queue(std::string name);

  const coordinator_stats& stats() const { return stats_; }
  executor get_executor() const { return strand_; }

 private:
  struct idle_entry {
    primitive_type type;
    const std::string* name;  // the key of its map entry (stable while the entry exists)
    steady_clock::time_point since;
  };
  using idle_list = std::list<idle_entry>;
  template <class T>
  struct slot {
    explicit slot(std::unique_ptr<T> v) : value(std::move(v)) {}
    std::unique_ptr<T> value;
    std::optional<idle_list::iterator> idle;  // its place in idle_ while it is idle
    bool wait_only = false;  // an event made by a wait: forgotten when its last waiter leaves
    T* operator->() const { return value.get(); }
    T& operator*() const { return *value; }
  };
  template <class T>
  struct named {
    using map = std::map<std::string, slot<T>, std::less<>>;
    map items;
  };
  // Touches the named primitive once a call on it ends (exceptions included).
  struct use_guard {
    coordinator& self;
    primitive_type type;
    const std::string& name;
    ~use_guard() { self.touch(type, name); }
  };

  template <class T>
  T& find(named<T>& kind, const std::string& name, std::string_view what);
  template <class T, class... A>
  typename named<T>::map::iterator create(named<T>& kind, primitive_type t, const std::string& name,
                                          A&&... args);
  template <class T>
  std::unique_ptr<T> take(named<T>& kind, primitive_type t, typename named<T>::map::iterator it);
  template <class F>
  void with_kind(primitive_type t, F&& f);
  void count_new(primitive_type t);  // checks the cap
  // After a call on a primitive (or a lease sweep): enters or leaves the idle list.
  void touch(primitive_type t, const std::string& name);
  template <class T>
  void touch_at(named<T>& kind, primitive_type t, typename named<T>::map::iterator it);
  void reclaim_idle(steady_clock::time_point now);
  std::optional<millis> until_next_reclaim(steady_clock::time_point now) const;
  void shared_bytes_freed();  // puts of other queues may fit now
  void schedule_sweep(steady_clock::time_point at);
  awaitable<void> sweep();
  // Parks until `w.wake` runs, the deadline, or the caller's cancellation.
  template <class W>
  awaitable<void> park(W& w, steady_clock::time_point deadline);
  void check_waiters(std::size_t waiting, const std::string& name);
  semaphore& semaphore_for(const std::string& name, bool lock, bool create_it);
  semaphore_info info(const std::string& name, const semaphore& s) const;

  net::strand<executor> strand_;
  coordinator_config config_;
  named<semaphore> semaphores_, locks_;
  named<event> events_;
  named<barrier> barriers_;
  named<work_queue> queues_;
  idle_list idle_;                               // oldest idle first
  std::unordered_set<work_queue*> put_waiting_;  // queues with parked puts
  coordinator_stats stats_;
  std::uint64_t last_token_ = 0;  // fencing tokens: one sequence for every semaphore and lock
  notifier sweep_wake_;
  steady_clock::time_point next_sweep_ = steady_clock::time_point::max();
  bool stopped_ = false;
  bool sweeper_started_ = false;
  bool sweeper_done_ = false;
  notifier sweeper_ended_;
};

}  // namespace gatherd::core
