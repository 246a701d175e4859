// Keep-alive connections per origin (scheme://host:port) with a cap per origin and a cap for the
// whole server. A request that finds neither an idle connection nor room for a new one WAITS in
// FIFO order (throttle, never reject); when the server-wide cap is the obstacle, an idle
// connection of another origin is closed to make room. Idle connections expire after
// `idle_timeout`. Thread-safe: callers are coroutines on different executors, so the state is
// behind a mutex and waiters are woken through thread-safe channels.
//
// `Connection` is opaque here: the pool only moves it around and destroys it (which closes it).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>
#include <algorithm>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"

namespace gatherd::core::fetch {

// No defaults here: the client's config (http_client_config) is their one source.
struct pool_limits {
  std::size_t max_total;
  std::size_t max_per_origin;
  millis idle_timeout;
};

template <class Connection>
class connection_pool : public std::enable_shared_from_this<connection_pool<Connection>> {
 public:
  using connection_ptr = std::unique_ptr<Connection>;

  // A slot of the pool held by one request: a pooled connection (reused) or the right to open a
  // new one (attach it). Destroying a lease closes its connection and frees the slot.
  class lease {
   public:
    lease() = default;
    lease(lease&&) noexcept = default;
    lease& operator=(lease&& other) noexcept {
      release(false);
      pool_ = std::move(other.pool_);
      origin_ = std::move(other.origin_);
      connection_ = std::move(other.connection_);
      reused_ = other.reused_;
      return *this;
    }
    ~lease() { release(false); }

    Connection* connection() const { return connection_.get(); }
    bool reused() const { return reused_; }
    void attach(connection_ptr c) { connection_ = std::move(c); }

    // Gives the slot back: the connection is pooled when `reusable`, else closed.
    void release(bool reusable) {
      if (auto pool = std::move(pool_)) pool->release(origin_, std::move(connection_), reusable);
    }

   private:
    friend class connection_pool;
    std::shared_ptr<connection_pool> pool_;
    std::string origin_;
    connection_ptr connection_;
    bool reused_ = false;
  };

  explicit connection_pool(pool_limits limits) : limits_(sane(limits)) {}
  connection_pool(const connection_pool&) = delete;
  connection_pool& operator=(const connection_pool&) = delete;

  // Completes with a lease for `origin`, waiting for room if needed. `allow_idle = false` asks
  // for a fresh connection (a pooled one just failed). While it waits, `*on_abort` (if given)
  // is set to a function that ends the wait; call it on the caller's executor only.
  // Throws system_error(operation_aborted) when cancelled, aborted or after close().
  awaitable<lease> acquire(std::string origin, bool allow_idle,
                           std::function<void()>* on_abort = nullptr);

  // Closes the idle connections older than idle_timeout, and gives their room to waiters.
  void sweep();

  // Closes every idle connection and ends every wait; later releases close their connection.
  void close();

  std::size_t idle_count() const {
    std::lock_guard lock(mutex_);
    return idle_total_;
  }

 private:
  using channel = net::experimental::concurrent_channel<void(boost::system::error_code)>;

  struct waiter {
    std::string origin;
    bool allow_idle = true;
    std::shared_ptr<channel> wakeup;
    bool queued = false;
    bool granted = false;
    connection_ptr connection;  // set when granted an idle connection
  };

  struct idle_connection {
    connection_ptr connection;
    steady_clock::time_point since;
  };

  struct origin_state {
    std::size_t open = 0;              // connecting + in use + idle
    std::deque<idle_connection> idle;  // oldest first
    std::list<waiter*> waiters;
    bool starving = false;  // its first waiter is blocked by the server-wide cap only
  };

  // What to do once the mutex is released: wake waiters, close connections.
  struct deferred {
    std::vector<std::shared_ptr<channel>> wake;
    std::vector<connection_ptr> doomed;
    ~deferred() {
      for (auto& ch : wake) ch->try_send(boost::system::error_code{});
    }
  };

  void release(const std::string& origin, connection_ptr c, bool reusable);
  void withdraw(waiter& w);
  bool try_grant(origin_state& o, waiter& w, deferred& d);
  bool evict_oldest_idle(deferred& d);
  void drop_expired(origin_state& o, steady_clock::time_point now, deferred& d);
  void serve(const std::string& origin, deferred& d);
  void serve_starving(deferred& d);
  void forget_if_unused(const std::string& origin);
  lease make_lease(waiter& w) {
    lease l;
    l.pool_ = this->shared_from_this();
    l.origin_ = w.origin;
    l.reused_ = w.connection != nullptr;
    l.connection_ = std::move(w.connection);
    w.granted = false;
    return l;
  }

  static pool_limits sane(pool_limits l) {  // a cap of 0 would make every request wait forever
    l.max_total = std::max<std::size_t>(l.max_total, 1);
    l.max_per_origin = std::max<std::size_t>(l.max_per_origin, 1);
    return l;
  }

  const pool_limits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, origin_state> origins_;
  std::list<std::string> starving_;  // origins waiting for server-wide room, FIFO
  std::size_t total_ = 0;
  std::size_t idle_total_ = 0;
  bool closed_ = false;
};

template <class Connection>
awaitable<typename connection_pool<Connection>::lease> connection_pool<Connection>::acquire(
    std::string origin, bool allow_idle, std::function<void()>* on_abort) {
  auto self = this->shared_from_this();  // a suspended wait keeps the pool alive
  auto ex = co_await net::this_coro::executor;
  waiter w;
  w.origin = std::move(origin);
  w.allow_idle = allow_idle;
  {
    deferred d;  // declared first: runs after the lock is released
    std::lock_guard lock(mutex_);
    if (closed_) throw boost::system::system_error(net::error::operation_aborted);
    auto& o = origins_[w.origin];
    if (o.waiters.empty() && try_grant(o, w, d)) co_return make_lease(w);
    w.wakeup = std::make_shared<channel>(ex, 1);
    w.queued = true;
    o.waiters.push_back(&w);
    if (o.waiters.size() == 1 && o.open < limits_.max_per_origin && !o.starving) {
      o.starving = true;
      starving_.push_back(w.origin);
    }
  }

  // Leaves no trace if the frame is destroyed while suspended (io_context torn down).
  struct withdraw_on_exit {
    connection_pool* pool;
    waiter* w;
    ~withdraw_on_exit() {
      if (w) pool->withdraw(*w);
    }
  } guard{this, &w};
  auto wakeup = w.wakeup;
  if (on_abort) *on_abort = [wakeup] { wakeup->cancel(); };
  auto [ec] = co_await wakeup->async_receive(net::as_tuple(net::use_awaitable));
  if (on_abort) *on_abort = nullptr;
  guard.w = nullptr;
  {
    std::unique_lock lock(mutex_);
    if (w.granted && !ec) {
      lock.unlock();
      co_return make_lease(w);
    }
  }
  withdraw(w);  // cancelled: out of the line, and a slot granted meanwhile goes to the next
  throw boost::system::system_error(net::error::operation_aborted);
}

template <class Connection>
void connection_pool<Connection>::withdraw(waiter& w) {
  deferred d;
  std::lock_guard lock(mutex_);
  if (w.queued) {
    auto it = origins_.find(w.origin);
    it->second.waiters.remove(&w);
    w.queued = false;
    serve(w.origin, d);  // the next waiter may be servable now that the head left
    forget_if_unused(w.origin);
    return;
  }
  if (!w.granted) return;
  w.granted = false;
  // Hand the slot back exactly as release() would, under the lock we already hold.
  auto& o = origins_[w.origin];
  if (w.connection && !closed_) {
    o.idle.push_back({std::move(w.connection), steady_clock::now()});
    ++idle_total_;
    serve(w.origin, d);
    serve_starving(d);
  } else {
    if (w.connection) d.doomed.push_back(std::move(w.connection));
    --o.open;
    --total_;
    serve_starving(d);
    serve(w.origin, d);
  }
  forget_if_unused(w.origin);
}

template <class Connection>
void connection_pool<Connection>::release(const std::string& origin, connection_ptr c,
                                          bool reusable) {
  deferred d;
  std::lock_guard lock(mutex_);
  auto& o = origins_[origin];
  if (reusable && c && !closed_) {
    o.idle.push_back({std::move(c), steady_clock::now()});
    ++idle_total_;
    serve(origin, d);  // its own waiters first: the connection is theirs to reuse
    serve_starving(d);
  } else {
    if (c) d.doomed.push_back(std::move(c));
    --o.open;
    --total_;
    serve_starving(d);  // freed server-wide room goes to who waited for it longest
    serve(origin, d);
  }
  forget_if_unused(origin);
}

// Under the lock: gives `w` an idle connection or room for a new one, if possible.
template <class Connection>
bool connection_pool<Connection>::try_grant(origin_state& o, waiter& w, deferred& d) {
  drop_expired(o, steady_clock::now(), d);
  if (!o.idle.empty()) {
    if (w.allow_idle) {
      w.connection = std::move(o.idle.back().connection);  // the most recently used
      o.idle.pop_back();
    } else {
      d.doomed.push_back(std::move(o.idle.front().connection));  // its room, for a fresh one
      o.idle.pop_front();
    }
    --idle_total_;
    w.granted = true;
    return true;
  }
  if (o.open >= limits_.max_per_origin) return false;
  if (total_ >= limits_.max_total && !evict_oldest_idle(d)) return false;
  ++o.open;
  ++total_;
  w.granted = true;
  return true;
}

template <class Connection>
bool connection_pool<Connection>::evict_oldest_idle(deferred& d) {
  if (idle_total_ == 0) return false;
  origin_state* oldest = nullptr;
  for (auto& [name, o] : origins_) {
    if (!o.idle.empty() && (!oldest || o.idle.front().since < oldest->idle.front().since)) {
      oldest = &o;
    }
  }
  d.doomed.push_back(std::move(oldest->idle.front().connection));
  oldest->idle.pop_front();
  --idle_total_;
  --oldest->open;
  --total_;
  return true;
}

template <class Connection>
void connection_pool<Connection>::drop_expired(origin_state& o, steady_clock::time_point now,
                                               deferred& d) {
  while (!o.idle.empty() && now - o.idle.front().since >= limits_.idle_timeout) {
    d.doomed.push_back(std::move(o.idle.front().connection));
    o.idle.pop_front();
    --idle_total_;
    --o.open;
    --total_;
  }
}

// Under the lock: grants to the waiters of `origin`, in order, while there is room.
template <class Connection>
void connection_pool<Connection>::serve(const std::string& origin, deferred& d) {
  auto it = origins_.find(origin);
  if (it == origins_.end()) return;
  auto& o = it->second;
  while (!o.waiters.empty()) {
    waiter* w = o.waiters.front();
    if (!try_grant(o, *w, d)) break;
    o.waiters.pop_front();
    w->queued = false;
    d.wake.push_back(w->wakeup);
  }
  const bool starving = !o.waiters.empty() && o.open < limits_.max_per_origin;
  if (starving && !o.starving) starving_.push_back(origin);
  if (!starving && o.starving) starving_.remove(origin);
  o.starving = starving;
}

// Under the lock: origins blocked by the server-wide cap, longest waiting first. They are all
// blocked by the same condition, so the first that cannot proceed ends the round.
template <class Connection>
void connection_pool<Connection>::serve_starving(deferred& d) {
  while (!starving_.empty()) {
    const std::string origin = starving_.front();
    serve(origin, d);
    if (!starving_.empty() && starving_.front() == origin) break;
  }
}

template <class Connection>
void connection_pool<Connection>::forget_if_unused(const std::string& origin) {
  auto it = origins_.find(origin);
  if (it != origins_.end() && it->second.open == 0 && it->second.waiters.empty()) {
    origins_.erase(it);
  }
}

template <class Connection>
void connection_pool<Connection>::sweep() {
  deferred d;
  std::lock_guard lock(mutex_);
  const auto now = steady_clock::now();
  for (auto it = origins_.begin(); it != origins_.end();) {
    drop_expired(it->second, now, d);
    if (it->second.open == 0 && it->second.waiters.empty()) {
      it = origins_.erase(it);
    } else {
      ++it;
    }
  }
  serve_starving(d);
}

template <class Connection>
void connection_pool<Connection>::close() {
  deferred d;
  std::lock_guard lock(mutex_);
  closed_ = true;
  for (auto& [name, o] : origins_) {
    for (auto& idle : o.idle) d.doomed.push_back(std::move(idle.connection));
    o.open -= o.idle.size();
    total_ -= o.idle.size();
    o.idle.clear();
    for (waiter* w : o.waiters) {
      w->queued = false;  // not granted: it wakes up and throws operation_aborted
      d.wake.push_back(w->wakeup);
    }
    o.waiters.clear();
    o.starving = false;
  }
  idle_total_ = 0;
  starving_.clear();
}

}  // namespace gatherd::core::fetch
