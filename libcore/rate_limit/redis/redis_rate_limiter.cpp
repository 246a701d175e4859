#include "libcore/rate_limit/redis/redis_rate_limiter.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>
#include <cmath>
#include <exception>
#include <list>
#include <unordered_map>
#include <vector>

#include "libcore/backend_error.hpp"
#include "libcore/redis/error.hpp"
#include "libcore/redis/script.hpp"

namespace gatherd::core {

namespace {

// The GCRA step, atomic in Redis. KEYS[1]: the key's TAT in microseconds of Redis' clock;
// ARGV[1]: the interval in microseconds; ARGV[2]: the burst. Returns 0 when a request may start
// now (the TAT moves one interval on and expires once it is a second in the past), else the
// microseconds until one may.
const redis::script gcra_step(R"lua(
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - interval * (tonumber(ARGV[2]) - 1) - now
if wait > 0 then return wait end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat),
           'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
)lua");

using wake_handler = net::any_completion_handler<void(std::exception_ptr)>;

struct waiter {
  wake_handler handler;
  net::cancellation_slot slot;
};

// The requests of one key waiting in this process, FIFO; the pump serves the head.
struct line {
  explicit line(rate r) : limit(r) {}
  rate limit;  // the rate the key was first seen with
  std::list<waiter> waiters;
};

}  // namespace

struct redis_rate_limiter::state {
  state(executor ex, redis::connection& c, std::string p)
      : strand(net::make_strand(ex)), redis(c), prefix(std::move(p)) {}

  net::strand<executor> strand;
  redis::connection& redis;
  std::string prefix;
  std::unordered_map<std::string, line> lines;  // keys with waiters (and so a pump)
  std::atomic<std::size_t> count{0};

  // The waiter's coroutine runs on the strand too: it resumes once this posted call runs.
  void wake(wake_handler handler, std::exception_ptr e) {
    net::post(strand, [h = std::move(handler), e]() mutable { std::move(h)(e); });
  }
  void wake_front(line& l, std::exception_ptr e) {
    waiter w = std::move(l.waiters.front());
    l.waiters.pop_front();
    if (w.slot.is_connected()) w.slot.clear();
    wake(std::move(w.handler), e);
  }
};

// Serves one key's line until it is empty: asks Redis for the head's turn, waits as told.
awaitable<void> redis_rate_limiter::pump(std::shared_ptr<state> s, std::string key) {
  line& l = s->lines.at(key);  // (node-based map: stays valid while this key is in it)
  const auto interval_us = std::max<std::int64_t>(
      1, std::llround(1e6 / std::max(l.limit.per_second, 1e-6)));
  const std::string burst = std::to_string(std::max(l.limit.burst, 1));
  net::steady_timer timer(s->strand);
  while (!l.waiters.empty()) {
    std::int64_t wait_us = 0;
    try {
      // (Vectors built first: g++ 12 mishandles braced lists inside a co_await expression.)
      std::vector<std::string> keys(1, s->prefix + key);
      std::vector<std::string> args;
      args.push_back(std::to_string(interval_us));
      args.push_back(burst);
      const redis::reply r = co_await gcra_step.run(s->redis, std::move(keys), std::move(args));
      wait_us = r.as_integer();
    } catch (const redis::error& e) {
      const auto failure = std::make_exception_ptr(
          backend_unavailable("the shared rate limit of " + key + " is unavailable: " + e.what()));
      while (!l.waiters.empty()) s->wake_front(l, failure);
      break;
    }
    if (wait_us <= 0) {
      if (!l.waiters.empty()) s->wake_front(l, nullptr);  // else the head left meanwhile
      continue;
    }
    timer.expires_after(std::chrono::microseconds(wait_us));
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  }
  s->lines.erase(key);
  s->count.store(s->lines.size(), std::memory_order_relaxed);
}

awaitable<millis> redis_rate_limiter::acquire_here(std::shared_ptr<state> s, std::string key,
                                                   rate limit) {
  const auto arrived = steady_clock::now();
  auto [it, created] = s->lines.try_emplace(key, limit);
  line& l = it->second;
  if (created) s->count.store(s->lines.size(), std::memory_order_relaxed);
  auto park = [&s, &l, &key, created](auto handler) {
    auto slot = net::get_associated_cancellation_slot(handler);
    // (Constructed in place: Boost 1.81's any_completion_handler move-assignment recurses.)
    auto pos = l.waiters.insert(l.waiters.end(), waiter{wake_handler(std::move(handler)), slot});
    // A new line gets its pump once it has a waiter (the pump ends, and forgets the line, when
    // it finds none).
    if (created) net::co_spawn(s->strand, pump(s, key), net::detached);
    if (pos->slot.is_connected()) {
      pos->slot.assign([s = s.get(), &l, pos](net::cancellation_type) {  // runs on the strand
        wake_handler h = std::move(pos->handler);
        l.waiters.erase(pos);
        s->wake(std::move(h), std::make_exception_ptr(
                                  boost::system::system_error(net::error::operation_aborted)));
      });
    }
  };
  auto token = net::as_tuple(net::use_awaitable);
  auto [failure] = co_await net::async_initiate<decltype(token), void(std::exception_ptr)>(
      park, token);
  if (failure) std::rethrow_exception(failure);
  co_return std::chrono::duration_cast<millis>(steady_clock::now() - arrived);
}

redis_rate_limiter::redis_rate_limiter(executor ex, redis::connection& redis, std::string prefix)
    : state_(std::make_shared<state>(ex, redis, std::move(prefix))) {}

redis_rate_limiter::~redis_rate_limiter() = default;

awaitable<millis> redis_rate_limiter::acquire(std::string key, rate limit) {
  // One hop onto the strand that owns the lines; co_spawn forwards a cancellation there too.
  return net::co_spawn(state_->strand, acquire_here(state_, std::move(key), limit),
                       net::use_awaitable);
}

std::size_t redis_rate_limiter::keys() const {
  return state_->count.load(std::memory_order_relaxed);
}

}  // namespace gatherd::core
