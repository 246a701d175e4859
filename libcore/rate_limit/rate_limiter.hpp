// Rate limits keyed by a string (a host:port): the seam between the fetcher and where the
// limits' state lives. `throttle` keeps it in this process (the memory backend);
// `redis_rate_limiter` keeps it in Redis, so every replica shares one schedule per key.
#pragma once

#include <cstddef>
#include <string>

#include "libcore/asio.hpp"
#include "libcore/rate_limit/gcra.hpp"

namespace gatherd::core {

class rate_limiter {
 public:
  virtual ~rate_limiter() = default;

  // Waits until a request under `key` may start at `limit`, in FIFO order per key; returns how
  // long it waited. Cancellable. Throws backend_unavailable when shared state cannot be reached.
  virtual awaitable<millis> acquire(std::string key, rate limit) = 0;

  // Keys currently remembered by this process (for tests and metrics).
  virtual std::size_t keys() const = 0;
};

}  // namespace gatherd::core
