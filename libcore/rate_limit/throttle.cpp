#include "libcore/rate_limit/throttle.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

namespace gatherd::core {

struct throttle::waiter {
  wake_handler handler;
  net::cancellation_slot slot;
};

struct throttle::bucket {
  bucket(const net::strand<executor>& ex, rate r) : limit(r), timer(ex) {}
  gcra limit;
  std::list<waiter> waiters;  // FIFO
  net::steady_timer timer;    // armed for the first waiter's turn
  bool armed = false;
};

throttle::throttle(executor ex) : strand_(net::make_strand(ex)) {}

throttle::~throttle() = default;

awaitable<millis> throttle::acquire(std::string key, rate limit) {
  // One hop onto the strand that owns the buckets; co_spawn forwards a cancellation there too.
  return net::co_spawn(strand_, acquire_here(std::move(key), limit), net::use_awaitable);
}

awaitable<millis> throttle::acquire_here(std::string key, rate limit) {
  const auto arrived = steady_clock::now();
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= forget_above_) forget_idle(arrived);
    it = buckets_.emplace(std::move(key), std::make_unique<bucket>(strand_, limit)).first;
    key_count_.store(buckets_.size(), std::memory_order_relaxed);
  }
  bucket& b = *it->second;
  if (b.waiters.empty() && b.limit.conforms(arrived)) {
    b.limit.start_now(arrived);
    co_return millis{0};
  }

  auto park = [this, &b](auto handler) {
    auto slot = net::get_associated_cancellation_slot(handler);
    // (Constructed in place: Boost 1.81's any_completion_handler move-assignment recurses.)
    auto pos = b.waiters.insert(b.waiters.end(), waiter{wake_handler(std::move(handler)), slot});
    if (pos->slot.is_connected()) {
      pos->slot.assign([this, &b, pos](net::cancellation_type) {  // runs on the strand
        wake_handler h = std::move(pos->handler);
        b.waiters.erase(pos);  // gave up: takes no slot
        wake(std::move(h), net::error::operation_aborted);
      });
    }
    if (!b.armed) arm(b);
  };
  auto token = net::as_tuple(net::use_awaitable);
  auto [ec] = co_await net::async_initiate<decltype(token), void(boost::system::error_code)>(
      park, token);
  if (ec) throw boost::system::system_error(ec);
  co_return std::chrono::duration_cast<millis>(steady_clock::now() - arrived);
}

void throttle::arm(bucket& b) {
  b.armed = true;
  b.timer.expires_at(b.limit.next_start());
  b.timer.async_wait([this, &b](boost::system::error_code ec) {
    if (ec) return;  // the throttle is being destroyed: `b` may be gone
    b.armed = false;
    release_due(b);
  });
}

void throttle::release_due(bucket& b) {
  const auto now = steady_clock::now();
  while (!b.waiters.empty() && b.limit.conforms(now)) {
    b.limit.start_queued(now);
    waiter w = std::move(b.waiters.front());
    b.waiters.pop_front();
    if (w.slot.is_connected()) w.slot.clear();
    wake(std::move(w.handler), {});
  }
  if (!b.waiters.empty()) arm(b);
}

// The waiter's coroutine runs on the strand too: it resumes once this posted call runs.
void throttle::wake(wake_handler handler, boost::system::error_code ec) {
  net::post(strand_, [h = std::move(handler), ec]() mutable { std::move(h)(ec); });
}

void throttle::forget_idle(steady_clock::time_point now) {
  std::erase_if(buckets_, [now](const auto& entry) {
    const bucket& b = *entry.second;
    return b.waiters.empty() && !b.armed && b.limit.idle(now);
  });
  // Every key busy: let the map grow rather than forget a schedule someone is keeping.
  if (buckets_.size() >= forget_above_ / 2) forget_above_ *= 2;
}

}  // namespace gatherd::core
