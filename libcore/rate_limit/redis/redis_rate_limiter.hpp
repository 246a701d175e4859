// Rate limits whose schedule lives in Redis, shared by every replica: the GCRA's theoretical
// arrival time (TAT) of each key is one Redis string, read and moved by one script that takes
// the time from Redis (`TIME`), never from a replica's clock. In front of it, per key, a local
// FIFO line: only its head talks to Redis (one script call per start, plus one per wait it is
// told to make), the others wait their turn in this process, so a thousand waiting requests cost
// Redis nothing.
//
// Failure: when Redis does not answer within the connection's timeout, the head and everyone
// queued behind it fail with backend_unavailable (nothing is sent for them); the next caller
// tries again.
//
// A start granted while its waiter was being cancelled passes to the next in line, or is lost
// (the schedule then runs one slot slow, never fast).
#pragma once

#include <memory>
#include <string>

#include "libcore/rate_limit/rate_limiter.hpp"
#include "libcore/redis/connection.hpp"

namespace gatherd::core {

class redis_rate_limiter final : public rate_limiter {
 public:
  // Keys are stored as `<prefix><key>` (default "gatherd:rate:"); `redis` must outlive this.
  redis_rate_limiter(executor ex, redis::connection& redis, std::string prefix = "gatherd:rate:");
  ~redis_rate_limiter() override;
  redis_rate_limiter(const redis_rate_limiter&) = delete;
  redis_rate_limiter& operator=(const redis_rate_limiter&) = delete;

  awaitable<millis> acquire(std::string key, rate limit) override;
  std::size_t keys() const override;

 private:
  struct state;
  static awaitable<void> pump(std::shared_ptr<state> s, std::string key);
  static awaitable<millis> acquire_here(std::shared_ptr<state> s, std::string key, rate limit);
  std::shared_ptr<state> state_;
};

}  // namespace gatherd::core
