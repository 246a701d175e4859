// Rate limits keyed by a string (a host, a batch) in this process's memory: requests over the
// rate wait for their turn (throttle, never reject), in FIFO order per key. The state lives on one strand; each key has
// one timer, armed for its first waiter only, so waiting costs no timer and no polling per
// request. Keys that have gone idle are forgotten, so the number of keys stays bounded by
// the traffic of the last few seconds.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "libcore/asio.hpp"
#include "libcore/rate_limit/gcra.hpp"
#include "libcore/rate_limit/rate_limiter.hpp"

namespace gatherd::core {

class throttle final : public rate_limiter {
 public:
  explicit throttle(executor ex);
  ~throttle() override;
  throttle(const throttle&) = delete;
  throttle& operator=(const throttle&) = delete;

  // Waits until a request under `key` may start at `limit` (the rate a key is first seen with
  // stays its rate); returns how long it waited. Cancellable: a cancelled waiter takes no slot.
  awaitable<millis> acquire(std::string key, rate limit) override;

  // Keys currently remembered (for tests and metrics).
  std::size_t keys() const override { return key_count_.load(std::memory_order_relaxed); }

 private:
  struct waiter;
  struct bucket;
  using wake_handler = net::any_completion_handler<void(boost::system::error_code)>;

  awaitable<millis> acquire_here(std::string key, rate limit);
  void arm(bucket& b);
  void release_due(bucket& b);
  void wake(wake_handler handler, boost::system::error_code ec);
  void forget_idle(steady_clock::time_point now);

  net::strand<executor> strand_;
  std::unordered_map<std::string, std::unique_ptr<bucket>> buckets_;
  std::size_t forget_above_ = 1024;
  std::atomic<std::size_t> key_count_{0};
};

}  // namespace gatherd::core
