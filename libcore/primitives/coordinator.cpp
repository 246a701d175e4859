#include "libcore/primitives/coordinator.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <cctype>

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

}  // namespace

coordinator::coordinator(executor io, coordinator_config config)
    : strand_(net::make_strand(io)), config_(config) {}

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

template <class T>
T& coordinator::find(named<T>& kind, const std::string& name, std::string_view what) {
  auto it = kind.items.find(name);
  if (it == kind.items.end()) {
    throw primitive_error(primitive_errc::not_found, "no " + std::string(what) + " " + name);
  }
  return *it->second;
}

void coordinator::count_new(primitive_type t) {
  std::size_t total = 0;
  for (const auto& n : stats_.primitives) total += n.load(std::memory_order_relaxed);
  if (total >= config_.max_primitives) {
    throw primitive_error(
        primitive_errc::too_many_primitives,
        std::to_string(config_.max_primitives) + " primitives exist, the server's limit");
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
  net::steady_timer timer(strand_, deadline);
  w.wake = [&timer] { timer.cancel(); };
  ++stats_.waiters;
  co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  --stats_.waiters;
  w.wake = nullptr;
}

// ---- leases ---------------------------------------------------------------------------------

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
    for (auto* kind : {&semaphores_, &locks_}) {
      for (auto& [name, s] : kind->items) {
        s->expire(now);
        later(s->next_expiry());
      }
    }
    for (auto& [name, q] : queues_.items) {
      q->expire(now);
      later(q->next_expiry());
    }
    next_sweep_ = next.value_or(steady_clock::time_point::max());
  }
  sweeper_done_ = true;
  sweeper_ended_.notify_all();
}

// ---- semaphores and locks -------------------------------------------------------------------

semaphore& coordinator::semaphore_for(const std::string& name, bool lock, bool create) {
  auto& kind = lock ? locks_ : semaphores_;
  auto it = kind.items.find(name);
  if (it != kind.items.end()) return *it->second;
  if (!create) {
    throw primitive_error(primitive_errc::not_found,
                          std::string(lock ? "no lock " : "no semaphore ") + name);
  }
  count_new(lock ? primitive_type::lock : primitive_type::semaphore);
  return *kind.items
              .emplace(name, std::make_unique<semaphore>(1, &last_token_, &stats_.lease_expiries))
              .first->second;
}

semaphore_info coordinator::info(const std::string& name, const semaphore& s) const {
  return semaphore_info{name, s.permits(), s.available(), s.waiters(), s.holders()};
}

awaitable<semaphore_info> coordinator::put_semaphore(std::string name, std::size_t permits) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), permits]() -> awaitable<semaphore_info> {
        semaphore& s = semaphore_for(name, false, true);
        s.set_permits(permits, steady_clock::now());
        co_return info(name, s);
      },
      net::use_awaitable);
}

awaitable<semaphore_info> coordinator::get_semaphore(std::string name, bool lock) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), lock]() -> awaitable<semaphore_info> {
        semaphore& s = semaphore_for(name, lock, lock);
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
        auto gone = std::move(it->second);
        kind.items.erase(it);
        --stats_.primitives[index_of(lock ? primitive_type::lock : primitive_type::semaphore)];
        for (acquire_waiter* w : gone->take_waiters()) {
          if (w->wake) w->wake();  // they find no grant and no semaphore: acquire_timeout
        }
        co_return;
      },
      net::use_awaitable);
}

// ---- events ---------------------------------------------------------------------------------

namespace {
event& event_for(std::map<std::string, std::unique_ptr<event>, std::less<>>& items,
                 const std::string& name, const std::function<void()>& count_new) {
  auto it = items.find(name);
  if (it != items.end()) return *it->second;
  count_new();
  return *items.emplace(name, std::make_unique<event>()).first->second;
}
}  // namespace

awaitable<event_info> coordinator::put_event(std::string name) {
  return set_event(std::move(name), false);
}

awaitable<event_info> coordinator::set_event(std::string name, bool set, bool clear) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), set, clear]() -> awaitable<event_info> {
        event& e = event_for(events_.items, name, [this] { count_new(primitive_type::event); });
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
        event& e = event_for(events_.items, name, [this] { count_new(primitive_type::event); });
        if (e.is_set() || wait.count() == 0) co_return e.is_set();
        check_waiters(e.waiters(), name);
        event_waiter waiter;
        e.enqueue(waiter);
        co_await park(waiter, deadline_after(wait));
        if (!waiter.woken) {
          if (auto it = events_.items.find(name); it != events_.items.end())
            it->second->dequeue(waiter);
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
        auto gone = std::move(it->second);
        events_.items.erase(it);
        --stats_.primitives[index_of(primitive_type::event)];
        gone->clear();
        co_return;
      },
      net::use_awaitable);
}

// ---- barriers -------------------------------------------------------------------------------

awaitable<barrier_info> coordinator::put_barrier(std::string name, std::size_t parties) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), parties]() -> awaitable<barrier_info> {
        auto it = barriers_.items.find(name);
        if (it == barriers_.items.end()) {
          count_new(primitive_type::barrier);
          it = barriers_.items.emplace(name, std::make_unique<barrier>(parties)).first;
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
        find(barriers_, name, "barrier");
        barriers_.items.erase(name);
        --stats_.primitives[index_of(primitive_type::barrier)];
        co_return;
      },
      net::use_awaitable);
}

// ---- queues ---------------------------------------------------------------------------------

namespace {
queue_info info_of(const std::string& name, const work_queue& q) {
  return queue_info{name,           q.maxsize(),     q.size(),       q.leased(),
                    q.unfinished(), q.put_waiters(), q.get_waiters()};
}
}  // namespace

awaitable<queue_info> coordinator::put_queue(std::string name, std::size_t maxsize) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), maxsize]() -> awaitable<queue_info> {
        auto it = queues_.items.find(name);
        if (it == queues_.items.end()) {
          count_new(primitive_type::queue);
          it = queues_.items
                   .emplace(name, std::make_unique<work_queue>(maxsize, &stats_.lease_expiries))
                   .first;
        } else {
          it->second->set_maxsize(maxsize);
        }
        co_return info_of(name, *it->second);
      },
      net::use_awaitable);
}

awaitable<queue_info> coordinator::get_queue(std::string name) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name)]() -> awaitable<queue_info> {
        work_queue& q = find(queues_, name, "queue");
        q.expire(steady_clock::now());
        co_return info_of(name, q);
      },
      net::use_awaitable);
}

awaitable<void> coordinator::put_items(std::string name, std::vector<nlohmann::json> items,
                                       millis wait) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), items = std::move(items), wait]() mutable -> awaitable<void> {
        co_await net::this_coro::throw_if_cancelled(false);
        work_queue& q = find(queues_, name, "queue");
        if (items.size() > q.maxsize()) {
          throw primitive_error(primitive_errc::invalid,
                                std::to_string(items.size()) + " items can never fit in queue " +
                                    name + " of maxsize " + std::to_string(q.maxsize()));
        }
        const std::size_t n = items.size();
        if (q.try_put(items)) {
          stats_.queued_items += n;
          co_return;
        }
        check_waiters(q.waiters(), name);
        put_waiter waiter;
        waiter.items = std::move(items);
        q.enqueue(waiter);
        co_await park(waiter, deadline_after(wait));
        if (!waiter.done) {
          if (auto it = queues_.items.find(name); it != queues_.items.end())
            it->second->dequeue(waiter);
          throw primitive_error(primitive_errc::queue_full,
                                "queue " + name + " had no room for " + std::to_string(n) +
                                    " items within " + std::to_string(wait.count()) + " ms");
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
        work_queue& q = find(queues_, name, "queue");
        const std::size_t before = q.unfinished();
        auto unknown = q.done(receipts);
        stats_.queued_items -= before - q.unfinished();
        co_return unknown;
      },
      net::use_awaitable);
}

awaitable<void> coordinator::return_items(std::string name, std::vector<std::string> receipts) {
  return net::co_spawn(
      strand_,
      [this, name = std::move(name), receipts = std::move(receipts)]() -> awaitable<void> {
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
        work_queue& q = find(queues_, name, "queue");
        stats_.queued_items -= q.unfinished();
        auto gone = std::move(queues_.items.find(name)->second);
        queues_.items.erase(name);
        --stats_.primitives[index_of(primitive_type::queue)];
        gone->wake_all();
        co_return;
      },
      net::use_awaitable);
}

}  // namespace gatherd::core
