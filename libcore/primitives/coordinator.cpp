#include "libcore/primitives/coordinator.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <cctype>
#include <type_traits>

#include "libcore/payload_bytes.hpp"

namespace gatherd::core {

bool valid_primitive_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

std::string_view to_string(primitive_type t) {
  switch (t) {
    case primitive_type::semaphore:
      return "semaphore";
    case primitive_type::lock:
      return "lock";
    case primitive_type::event:
      return "event";
    case primitive_type::barrier:
      return "barrier";
    case primitive_type::queue:
      return "queue";
  }
  return "semaphore";
}

namespace {

std::size_t index_of(primitive_type t) {
  return static_cast<std::size_t>(t);
}

// The caller stopped waiting (its client went away): checked after a wait, never thrown.
awaitable<bool> caller_gone() {
  auto state = co_await net::this_coro::cancellation_state;
  co_return state.cancelled() != net::cancellation_type::none;
}

steady_clock::time_point deadline_after(millis wait) {
  return steady_clock::now() + wait;
}

// Idle: forgetting it loses nothing but configuration a client restores with PUT (semaphores,
// barriers and queues then answer 404, loudly; locks and events read as fresh ones, which is
// what they are). Never a holder, a waiter, an item, or a set event.
bool is_idle(const semaphore& s) {
  return s.holders().empty() && s.waiters() == 0;
}
bool is_idle(const event& e) {
  return !e.is_set() && e.waiters() == 0;
}
bool is_idle(const barrier& b) {
  return b.waiting() == 0;
}
bool is_idle(const work_queue& q) {
  return q.unfinished() == 0 && q.waiters() == 0;
}

primitive_type semaphore_type(bool lock) {
  return lock ? primitive_type::lock : primitive_type::semaphore;
}

}  // namespace

coordinator::coordinator(executor io, coordinator_config config)
    : strand_(net::make_strand(io)), config_(config) {
  stats_.queue_bytes.max = config_.queues_max_bytes;
}

coordinator::~coordinator() = default;

void coordinator::start() {
  sweeper_started_ = true;
  net::co_spawn(strand_, sweep(), net::detached);
}

awaitable<void> coordinator::shutdown() {
  return net::co_spawn(
      strand_,
      [this]() -> awaitable<void> {
        stopped_ = true;
        sweep_wake_.notify_all();
        for (auto* kind : {&semaphores_, &locks_}) {
          for (auto& [name, s] : kind->items) {
            for (acquire_waiter* w : s->take_waiters())
              if (w->wake) w->wake();
          }
        }
        for (auto& [name, e] : events_.items) e->wake_all();
        for (auto& [name, b] : barriers_.items) b->wake_all();
        for (auto& [name, q] : queues_.items) q->wake_all();
        while (sweeper_started_ && !sweeper_done_)
          co_await sweeper_ended_.wait_until(steady_clock::time_point::max());
      },
      net::use_awaitable);
}

// ---- the registry of names ------------------------------------------------------------------

template <class T>
T& coordinator::find(named<T>& kind, const std::string& name, std::string_view what) {
  auto it = kind.items.find(name);
  if (it == kind.items.end()) {
    throw primitive_error(primitive_errc::not_found, "no " + std::string(what) + " " + name);
  }
  return *it->second;
}

template <class T, class... A>
typename coordinator::named<T>::map::iterator coordinator::create(named<T>& kind, primitive_type t,
                                                                  const std::string& name,
                                                                  A&&... args) {
  count_new(t);
  return kind.items.emplace(name, slot<T>(std::make_unique<T>(std::forward<A>(args)...))).first;
}

template <class T>
std::unique_ptr<T> coordinator::take(named<T>& kind, primitive_type t,
                                     typename named<T>::map::iterator it) {
  if (it->second.idle) idle_.erase(*it->second.idle);
  auto gone = std::move(it->second.value);
  kind.items.erase(it);
  --stats_.primitives[index_of(t)];
  return gone;
}

template <class F>
void coordinator::with_kind(primitive_type t, F&& f) {
  switch (t) {
    case primitive_type::semaphore:
      return f(semaphores_);
    case primitive_type::lock:
      return f(locks_);
    case primitive_type::event:
      return f(events_);
    case primitive_type::barrier:
      return f(barriers_);
    case primitive_type::queue:
      return f(queues_);
  }
}

void coordinator::count_new(primitive_type t) {
  auto total = [this] {
    std::size_t n = 0;
    for (const auto& each : stats_.primitives) n += each.load(std::memory_order_relaxed);
    return n;
  };
  if (total() >= config_.max_primitives) {
    const auto now = steady_clock::now();
    reclaim_idle(now);  // idle ones already due make room before the sweep comes round
    if (total() >= config_.max_primitives) {
      throw primitive_error(
          primitive_errc::too_many_primitives,
          std::to_string(config_.max_primitives) + " primitives exist, the server's limit",
          until_next_reclaim(now));
    }
  }
  ++stats_.primitives[index_of(t)];
}

void coordinator::check_waiters(std::size_t waiting, const std::string& name) {
  if (waiting >= config_.max_waiters) {
    throw primitive_error(
        primitive_errc::too_many_waiters,
        name + " already has " + std::to_string(waiting) + " waiters, the server's limit");
  }
}

template <class W>
awaitable<void> coordinator::park(W& w, steady_clock::time_point deadline) {
  if (stopped_) co_return;  // after shutdown a wait ends at once, as at its timeout
  net::steady_timer timer(strand_, deadline);
  w.wake = [&timer] { timer.cancel(); };
  ++stats_.waiters;
  co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  --stats_.waiters;
  w.wake = nullptr;
}

// ---- idle primitives ------------------------------------------------------------------------

void coordinator::touch(primitive_type t, const std::string& name) {
  with_kind(t, [&](auto& kind) {
    auto it = kind.items.find(name);
    if (it != kind.items.end()) touch_at(kind, t, it);
  });
}

template <class T>
void coordinator::touch_at(named<T>& kind, primitive_type t, typename named<T>::map::iterator it) {
  auto& s = it->second;
  const bool idle = is_idle(*s.value);
  if (idle && s.wait_only) {  // made only to park waiters, and none is left: it never was
    take(kind, t, it);
    return;
  }
  if (config_.idle_timeout.count() <= 0) return;
  if (!idle) {
    if (s.idle) idle_.erase(*s.idle);
    s.idle.reset();
    return;
  }
  // Any call is use, reads included (as an LRU clock): idle again from now, at the back.
  const auto now = steady_clock::now();
  if (s.idle) {
    idle_.splice(idle_.end(), idle_, *s.idle);
    (*s.idle)->since = now;
  } else {
    s.idle = idle_.insert(idle_.end(), idle_entry{t, &it->first, now});
  }
  schedule_sweep(idle_.front().since + config_.idle_timeout);
}

void coordinator::reclaim_idle(steady_clock::time_point now) {
  if (config_.idle_timeout.count() <= 0) return;
  while (!idle_.empty() && idle_.front().since + config_.idle_timeout <= now) {
    const idle_entry entry = idle_.front();
    with_kind(entry.type, [&](auto& kind) {
      auto it = kind.items.find(*entry.name);
      if (it == kind.items.end()) {  // cannot happen: an entry leaves the list with its primitive
        idle_.pop_front();
        return;
      }
      if (!is_idle(*it->second)) {  // cannot happen either (every call touches): keep it
        idle_.pop_front();
        it->second.idle.reset();
        return;
      }
      if constexpr (std::is_same_v<std::decay_t<decltype(*it->second)>, work_queue>)
        put_waiting_.erase(it->second.value.get());
      take(kind, entry.type, it);
      ++stats_.expired[index_of(entry.type)];
    });
  }
}

std::optional<millis> coordinator::until_next_reclaim(steady_clock::time_point now) const {
  if (config_.idle_timeout.count() <= 0 || idle_.empty()) return std::nullopt;
  const auto due = idle_.front().since + config_.idle_timeout;
  return std::max(millis{1}, std::chrono::ceil<millis>(due - now));
}

// ---- the sweeper: leases and idle primitives ------------------------------------------------

void coordinator::schedule_sweep(steady_clock::time_point at) {
  if (at >= next_sweep_) return;
  next_sweep_ = at;
  sweep_wake_.notify_all();
}

awaitable<void> coordinator::sweep() {
  while (!stopped_) {
    co_await sweep_wake_.wait_until(next_sweep_);
    const auto now = steady_clock::now();
    if (now < next_sweep_) continue;  // woken to re-arm earlier, or stopped
    std::optional<steady_clock::time_point> next;
    auto later = [&next](std::optional<steady_clock::time_point> t) {
      if (t && (!next || *t < *next)) next = t;
    };
    for (bool lock : {false, true}) {
      auto& kind = lock ? locks_ : semaphores_;
      for (auto it = kind.items.begin(); it != kind.items.end(); ++it) {
        if (it->second->expire(now) > 0) touch_at(kind, semaphore_type(lock), it);
        later(it->second->next_expiry());
      }
    }
    for (auto& [name, q] : queues_.items) {
      q->expire(now);  // (items go back: a queue never becomes idle by this)
      later(q->next_expiry());
    }
    reclaim_idle(now);
    if (!idle_.empty() && config_.idle_timeout.count() > 0)
      later(idle_.front().since + config_.idle_timeout);
    next_sweep_ = next.value_or(steady_clock::time_point::max());
  }
  sweeper_done_ = true;
  sweeper_ended_.notify_all();
}

// ---- semaphores and locks -------------------------------------------------------------------

semaphore& coordinator::semaphore_for(const std::string& name, bool lock, bool create_it) {
  auto& kind = lock ? locks_ : semaphores_;
  auto it = kind.items.find(name);
  if (it != kind.items.end()) return *it->second;
  if (!create_it) {
    throw primitive_error(primitive_errc::not_found,
                          std::string(lock ? "no lock " : "no semaphore ") + name);
  }
  return *create(kind, semaphore_type(lock), name, 1, &last_token_, &stats_.lease_expiries)->second;
}

semaphore_info coordinator::info(const std::string& name, const semaphore& s) const {
  return semaphore_info{name, s.permits(), s.available(), s.waiters(), s.holders()};
}

awaitable<semaphore_info> coordinator::put_semaphore(std::string name, std::size_t permits) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), permits]() -> awaitable<semaphore_info> {
        const use_guard use{*this, primitive_type::semaphore, name};
        semaphore& s = semaphore_for(name, false, true);
        s.set_permits(permits, steady_clock::now());
        co_return info(name, s);
      },
      net::use_awaitable);
}

awaitable<semaphore_info> coordinator::put_lock(std::string name) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name)]() -> awaitable<semaphore_info> {
        const use_guard use{*this, primitive_type::lock, name};
        semaphore& s = semaphore_for(name, true, true);
        s.expire(steady_clock::now());
        co_return info(name, s);
      },
      net::use_awaitable);
}

awaitable<semaphore_info> coordinator::get_semaphore(std::string name, bool lock) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), lock]() -> awaitable<semaphore_info> {
        const use_guard use{*this, semaphore_type(lock), name};
        auto& kind = lock ? locks_ : semaphores_;
        if (lock && !kind.items.contains(name)) {
          co_return semaphore_info{name, 1, 1, 0, {}};  // a lock never used (or forgotten) is free
        }
        semaphore& s = semaphore_for(name, lock, false);
        s.expire(steady_clock::now());
        co_return info(name, s);
      },
      net::use_awaitable);
}

awaitable<permit> coordinator::acquire(std::string name, bool lock, acquire_request request,
                                       millis wait) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), lock, request = std::move(request),
       wait]() -> awaitable<permit> {
        co_await net::this_coro::throw_if_cancelled(false);
        const use_guard use{*this, semaphore_type(lock), name};
        semaphore& s = semaphore_for(name, lock, lock);
        const auto now = steady_clock::now();
        s.expire(now);
        if (auto p = s.try_acquire(request, now)) {
          schedule_sweep(p->expires);
          co_return *p;
        }
        check_waiters(s.waiters(), name);
        acquire_waiter waiter{request, std::nullopt, nullptr};
        s.enqueue(waiter);
        co_await park(waiter, deadline_after(wait));
        const bool gone = co_await caller_gone();
        if (!waiter.granted) {
          // Timed out or gone (or the semaphore was deleted): leave the line.
          auto& kind = lock ? locks_ : semaphores_;
          if (auto it = kind.items.find(name); it != kind.items.end()) it->second->dequeue(waiter);
          if (gone) throw primitive_error(primitive_errc::acquire_timeout, "the caller left");
          throw primitive_error(
              primitive_errc::acquire_timeout,
              "no permit of " + name + " within " + std::to_string(wait.count()) + " ms");
        }
        schedule_sweep(waiter.granted->expires);
        if (gone) {  // granted to nobody: give it back to the next in line
          auto& kind = lock ? locks_ : semaphores_;
          if (auto it = kind.items.find(name); it != kind.items.end())
            it->second->release(waiter.granted->id, steady_clock::now());
          throw primitive_error(primitive_errc::acquire_timeout, "the caller left");
        }
        co_return *waiter.granted;
      },
      net::use_awaitable);
}

awaitable<std::uint32_t> coordinator::release(std::string name, bool lock, std::string permit_id) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), lock,
       permit_id = std::move(permit_id)]() -> awaitable<std::uint32_t> {
        const use_guard use{*this, semaphore_type(lock), name};
        auto& kind = lock ? locks_ : semaphores_;
        auto it = kind.items.find(name);
        if (it == kind.items.end()) {
          throw primitive_error(primitive_errc::not_held,
                                "permit " + permit_id + " is not held (no " +
                                    (lock ? "lock " : "semaphore ") + name + ")");
        }
        co_return it->second->release(permit_id, steady_clock::now());
      },
      net::use_awaitable);
}

awaitable<permit> coordinator::keepalive(std::string name, bool lock, std::string permit_id,
                                         millis ttl) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), lock, permit_id = std::move(permit_id),
       ttl]() -> awaitable<permit> {
        const use_guard use{*this, semaphore_type(lock), name};
        auto& kind = lock ? locks_ : semaphores_;
        auto it = kind.items.find(name);
        if (it == kind.items.end()) {
          throw primitive_error(primitive_errc::not_held, "permit " + permit_id + " is not held");
        }
        permit p = it->second->keepalive(permit_id, ttl, steady_clock::now());
        schedule_sweep(p.expires);
        co_return p;
      },
      net::use_awaitable);
}

awaitable<void> coordinator::remove_semaphore(std::string name, bool lock) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), lock]() -> awaitable<void> {
        auto& kind = lock ? locks_ : semaphores_;
        auto it = kind.items.find(name);
        if (it == kind.items.end()) {
          throw primitive_error(primitive_errc::not_found,
                                std::string(lock ? "no lock " : "no semaphore ") + name);
        }
        auto gone = take(kind, semaphore_type(lock), it);
        for (acquire_waiter* w : gone->take_waiters()) {
          if (w->wake) w->wake();  // they find no grant and no semaphore: acquire_timeout
        }
        co_return;
      },
      net::use_awaitable);
}

// ---- events ---------------------------------------------------------------------------------

awaitable<event_info> coordinator::put_event(std::string name) {
  return set_event(std::move(name), false);
}

awaitable<event_info> coordinator::set_event(std::string name, bool set, bool clear) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), set, clear]() -> awaitable<event_info> {
        const use_guard use{*this, primitive_type::event, name};
        auto it = events_.items.find(name);
        if (it == events_.items.end()) it = create(events_, primitive_type::event, name);
        it->second.wait_only = false;  // written: it is kept (until idle)
        event& e = *it->second;
        if (set) e.set();
        if (clear) e.clear();
        co_return event_info{name, e.is_set(), e.waiters()};
      },
      net::use_awaitable);
}

awaitable<bool> coordinator::wait_event(std::string name, millis wait) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), wait]() -> awaitable<bool> {
        co_await net::this_coro::throw_if_cancelled(false);
        const use_guard use{*this, primitive_type::event, name};
        auto it = events_.items.find(name);
        if (it == events_.items.end()) {
          if (wait.count() == 0) co_return false;  // never set, and a read makes nothing
          it = create(events_, primitive_type::event, name);
          it->second.wait_only = true;
        }
        event& e = *it->second;
        if (e.is_set() || wait.count() == 0) co_return e.is_set();
        check_waiters(e.waiters(), name);
        event_waiter waiter;
        e.enqueue(waiter);
        co_await park(waiter, deadline_after(wait));
        if (!waiter.woken) {
          if (auto at = events_.items.find(name); at != events_.items.end())
            at->second->dequeue(waiter);
        }
        co_return waiter.woken;
      },
      net::use_awaitable);
}

awaitable<void> coordinator::remove_event(std::string name) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name)]() -> awaitable<void> {
        auto it = events_.items.find(name);
        if (it == events_.items.end()) {
          throw primitive_error(primitive_errc::not_found, "no event " + name);
        }
        take(events_, primitive_type::event, it)->clear();
        co_return;
      },
      net::use_awaitable);
}

// ---- barriers -------------------------------------------------------------------------------

awaitable<barrier_info> coordinator::put_barrier(std::string name, std::size_t parties) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), parties]() -> awaitable<barrier_info> {
        const use_guard use{*this, primitive_type::barrier, name};
        auto it = barriers_.items.find(name);
        if (it == barriers_.items.end()) {
          it = create(barriers_, primitive_type::barrier, name, parties);
        } else {
          it->second->set_parties(parties);
        }
        const barrier& b = *it->second;
        co_return barrier_info{name, b.parties(), b.waiting(), b.generation()};
      },
      net::use_awaitable);
}

awaitable<barrier_info> coordinator::get_barrier(std::string name) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name)]() -> awaitable<barrier_info> {
        const use_guard use{*this, primitive_type::barrier, name};
        const barrier& b = find(barriers_, name, "barrier");
        co_return barrier_info{name, b.parties(), b.waiting(), b.generation()};
      },
      net::use_awaitable);
}

awaitable<barrier_pass> coordinator::wait_barrier(std::string name, millis wait) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), wait]() -> awaitable<barrier_pass> {
        co_await net::this_coro::throw_if_cancelled(false);
        const use_guard use{*this, primitive_type::barrier, name};
        barrier& b = find(barriers_, name, "barrier");
        check_waiters(b.waiting(), name);
        barrier_waiter waiter;
        b.arrive(waiter);
        if (!waiter.passed) co_await park(waiter, deadline_after(wait));
        if (!waiter.passed) {  // out of time (or gone): leave without breaking the others
          if (auto it = barriers_.items.find(name); it != barriers_.items.end())
            it->second->leave(waiter);
          throw primitive_error(primitive_errc::wait_timeout,
                                "barrier " + name + " was not complete within " +
                                    std::to_string(wait.count()) + " ms");
        }
        co_return *waiter.passed;
      },
      net::use_awaitable);
}

awaitable<void> coordinator::remove_barrier(std::string name) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name)]() -> awaitable<void> {
        auto it = barriers_.items.find(name);
        if (it == barriers_.items.end()) {
          throw primitive_error(primitive_errc::not_found, "no barrier " + name);
        }
        take(barriers_, primitive_type::barrier, it);
        co_return;
      },
      net::use_awaitable);
}

// ---- queues ---------------------------------------------------------------------------------

namespace {

queue_info info_of(const std::string& name, const work_queue& q) {
  queue_info i{name,           q.maxsize(),     q.size(),       q.leased(),
               q.unfinished(), q.put_waiters(), q.get_waiters()};
  i.max_bytes = q.max_bytes();
  i.bytes = q.bytes();
  return i;
}

// A put that found no room in time, refused by what kept it out.
primitive_error put_refusal(put_blocker why, const std::string& name, std::size_t n,
                            std::size_t bytes, millis wait, const queue_bytes_budget& shared) {
  const std::string within = " within " + std::to_string(wait.count()) + " ms";
  switch (why) {
    case put_blocker::bytes:
      return primitive_error(primitive_errc::queue_bytes_full,
                             "queue " + name + " had no room for " + std::to_string(n) +
                                 " items of " + std::to_string(bytes) + " bytes" + within +
                                 " (its max_bytes)");
    case put_blocker::shared_bytes:
      return primitive_error(primitive_errc::queues_memory_full,
                             "the server's queues hold " +
                                 std::to_string(shared.used.load(std::memory_order_relaxed)) +
                                 " of their " + std::to_string(shared.max) +
                                 " bytes: no room for " + std::to_string(bytes) + " more" + within);
    case put_blocker::count:
    case put_blocker::none:  // only earlier puts were in the way
      break;
  }
  return primitive_error(primitive_errc::queue_full, "queue " + name + " had no room for " +
                                                         std::to_string(n) + " items" + within);
}

}  // namespace

void coordinator::shared_bytes_freed() {
  const std::vector<work_queue*> waiting(put_waiting_.begin(), put_waiting_.end());
  for (work_queue* q : waiting) q->retry_puts();
}

awaitable<queue_info> coordinator::put_queue(std::string name, std::size_t maxsize,
                                             std::optional<std::size_t> max_bytes) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), maxsize, max_bytes]() -> awaitable<queue_info> {
        const use_guard use{*this, primitive_type::queue, name};
        const std::size_t bytes = max_bytes.value_or(config_.queue_max_bytes);
        auto it = queues_.items.find(name);
        if (it == queues_.items.end()) {
          it = create(queues_, primitive_type::queue, name, maxsize, bytes, &stats_.queue_bytes,
                      &stats_.lease_expiries);
        } else {
          it->second->set_limits(maxsize, bytes);
        }
        co_return info_of(name, *it->second);
      },
      net::use_awaitable);
}

awaitable<queue_info> coordinator::get_queue(std::string name) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name)]() -> awaitable<queue_info> {
        const use_guard use{*this, primitive_type::queue, name};
        work_queue& q = find(queues_, name, "queue");
        q.expire(steady_clock::now());
        co_return info_of(name, q);
      },
      net::use_awaitable);
}

awaitable<void> coordinator::put_items(std::string name, std::vector<nlohmann::json> values,
                                       millis wait) {
  // Sized here, on the caller's thread: the strand only adds the totals up.
  std::vector<queue_item> items;
  items.reserve(values.size());
  std::size_t bytes = 0;
  for (auto& value : values) {
    const std::size_t b = payload_bytes(value);
    bytes += b;
    items.push_back(queue_item{std::move(value), b});
  }
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), items = std::move(items), bytes,
       wait]() mutable -> awaitable<void> {
        co_await net::this_coro::throw_if_cancelled(false);
        const use_guard use{*this, primitive_type::queue, name};
        work_queue& q = find(queues_, name, "queue");
        const std::size_t n = items.size();
        if (n > q.maxsize()) {
          throw primitive_error(primitive_errc::invalid,
                                std::to_string(n) + " items can never fit in queue " + name +
                                    " of maxsize " + std::to_string(q.maxsize()));
        }
        const std::size_t room = std::min(q.max_bytes(), stats_.queue_bytes.max);
        if (bytes > room) {
          throw primitive_error(primitive_errc::item_too_large,
                                std::to_string(n) + " items of " + std::to_string(bytes) +
                                    " bytes can never fit in queue " + name + " (at most " +
                                    std::to_string(room) + " bytes)");
        }
        if (q.try_put(items, bytes)) {
          stats_.queued_items += n;
          co_return;
        }
        check_waiters(q.waiters(), name);
        put_waiter waiter;
        waiter.items = std::move(items);
        waiter.bytes = bytes;
        q.enqueue(waiter);
        put_waiting_.insert(&q);
        co_await park(waiter, deadline_after(wait));
        auto it = queues_.items.find(name);
        if (it != queues_.items.end()) {
          work_queue& now = *it->second;
          if (!waiter.done) now.dequeue(waiter);
          if (now.put_waiters() == 0) put_waiting_.erase(&now);
        }
        if (!waiter.done) {
          const put_blocker why =
              it == queues_.items.end() ? put_blocker::count : it->second->blocker(n, bytes);
          throw put_refusal(why, name, n, bytes, wait, stats_.queue_bytes);
        }
        stats_.queued_items += n;
      },
      net::use_awaitable);
}

awaitable<std::vector<delivery>> coordinator::get_items(std::string name, std::size_t max_items,
                                                        millis wait, millis lease) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), max_items, wait, lease]() -> awaitable<std::vector<delivery>> {
        co_await net::this_coro::throw_if_cancelled(false);
        const use_guard use{*this, primitive_type::queue, name};
        work_queue& q = find(queues_, name, "queue");
        const auto now = steady_clock::now();
        q.expire(now);
        auto got = q.try_get(max_items, lease, now);
        if (!got.empty() || wait.count() == 0) {
          if (!got.empty()) schedule_sweep(now + lease);
          co_return got;
        }
        check_waiters(q.waiters(), name);
        get_waiter waiter;
        waiter.max_items = max_items;
        waiter.lease = lease;
        q.enqueue(waiter);
        co_await park(waiter, deadline_after(wait));
        const bool gone = co_await caller_gone();
        auto it = queues_.items.find(name);
        if (waiter.got.empty()) {
          if (it != queues_.items.end()) it->second->dequeue(waiter);
          co_return waiter.got;  // empty on timeout
        }
        schedule_sweep(steady_clock::now() + lease);
        if (gone && it != queues_.items.end()) {
          // Handed to nobody: put them straight back (their lease ends now).
          it->second->give_back(waiter.got);
          co_return std::vector<delivery>{};
        }
        co_return std::move(waiter.got);
      },
      net::use_awaitable);
}

awaitable<std::vector<std::string>> coordinator::done_items(std::string name,
                                                            std::vector<std::string> receipts) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name),
       receipts = std::move(receipts)]() -> awaitable<std::vector<std::string>> {
        const use_guard use{*this, primitive_type::queue, name};
        work_queue& q = find(queues_, name, "queue");
        const std::size_t before = q.unfinished();
        auto unknown = q.done(receipts);
        stats_.queued_items -= before - q.unfinished();
        if (before != q.unfinished()) shared_bytes_freed();
        co_return unknown;
      },
      net::use_awaitable);
}

awaitable<void> coordinator::return_items(std::string name, std::vector<std::string> receipts) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), receipts = std::move(receipts)]() -> awaitable<void> {
        const use_guard use{*this, primitive_type::queue, name};
        auto it = queues_.items.find(name);
        if (it == queues_.items.end()) co_return;
        std::vector<delivery> back;
        for (const auto& r : receipts) back.push_back(delivery{r, nullptr});
        it->second->give_back(back);
      },
      net::use_awaitable);
}

awaitable<std::size_t> coordinator::join_queue(std::string name, millis wait) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), wait]() -> awaitable<std::size_t> {
        co_await net::this_coro::throw_if_cancelled(false);
        const use_guard use{*this, primitive_type::queue, name};
        work_queue& q = find(queues_, name, "queue");
        if (q.unfinished() == 0 || wait.count() == 0) co_return q.unfinished();
        check_waiters(q.waiters(), name);
        join_waiter waiter;
        q.enqueue(waiter);
        co_await park(waiter, deadline_after(wait));
        auto it = queues_.items.find(name);
        if (it == queues_.items.end()) co_return 0;
        if (!waiter.done) it->second->dequeue(waiter);
        co_return it->second->unfinished();
      },
      net::use_awaitable);
}

awaitable<void> coordinator::remove_queue(std::string name) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name)]() -> awaitable<void> {
        auto it = queues_.items.find(name);
        if (it == queues_.items.end()) {
          throw primitive_error(primitive_errc::not_found, "no queue " + name);
        }
        stats_.queued_items -= it->second->unfinished();
        put_waiting_.erase(it->second.value.get());
        auto gone = take(queues_, primitive_type::queue, it);
        gone->wake_all();
        const bool held_bytes = gone->bytes() > 0;
        gone.reset();  // its bytes go back to the server's budget
        if (held_bytes) shared_bytes_freed();
        co_return;
      },
      net::use_awaitable);
}

}  // namespace gatherd::core
