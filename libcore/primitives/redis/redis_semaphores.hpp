// Named semaphores and locks kept in Redis, shared by every replica that uses the same Redis:
// the same calls and semantics as the coordinator's semaphore and lock section (leases with
// keepalive, strictly FIFO waiters, fencing tokens, reentrant locks, --max-primitives,
// --max-waiters, idle expiry), each operation one Lua script run atomically in Redis with Redis's
// clock. The layout and the scripts are in semaphore_scripts.hpp and docs/DECISIONS.md.
//
// Waiting: a waiter stands in a line in Redis (with a heartbeat, so a dead replica's waiters
// disappear) and takes a permit itself, by running the acquire script again, when it is among
// the first `available` in line. It tries again when a wake-up names it (redis_wakeups, pub/sub),
// when the earliest lease it saw ends, and at least every `recheck`, so a lost message delays it
// but never strands it.
//
// Errors: primitive_error as the coordinator (not_found, not_held, acquire_timeout,
// too_many_waiters, too_many_primitives with its retry_after); backend_unavailable
// (libcore/backend_error.hpp, the service's 503) when Redis cannot answer within the connection's
// timeout, is disconnected or closed, or refuses to serve (an error reply: OOM, BUSY, LOADING,
// READONLY). A call that failed so may or may not have run in Redis: a grant whose reply was lost
// ends with its lease. A waiter whose Redis becomes unreachable fails with backend_unavailable at
// its next attempt; its place in line ends with its heartbeat.
//
// Threading: every member may be called from any thread. An acquire runs on a strand of its own
// (where its wake-ups are delivered); the other calls run on the caller's executor. What they
// share is Redis and the connection.
#pragma once

#include <atomic>
#include <string>

#include "libcore/asio.hpp"
#include "libcore/backend_error.hpp"
#include "libcore/primitives/coordinator.hpp"
#include "libcore/primitives/redis/wakeups.hpp"
#include "libcore/primitives/semaphore.hpp"
#include "libcore/redis/connection.hpp"
#include "libcore/redis/script.hpp"

namespace gatherd::core {

struct redis_semaphores_config {
  std::string prefix = "gatherd";      // of every key and channel; replicas must agree
  std::size_t max_primitives = 10000;  // of every type together (the registry key counts them)
  std::size_t max_waiters = 1000;      // per primitive, across replicas
  millis idle_timeout{600000};         // the keys expire this long after last use; 0: never
  // A waiter re-reads Redis at least this often even if no wake-up came (lost pub/sub messages).
  millis recheck{1000};
  // A waiter's place in line lasts this long past its last attempt; it must exceed `recheck`
  // plus the backend timeout, or a live but slow waiter loses its place (it joins again behind).
  millis waiter_heartbeat{5000};
};

class redis_semaphores {
 public:
  // `commands` and `wakeups` must outlive this object (a process shares one of each).
  redis_semaphores(executor io, redis::connection& commands, redis_wakeups& wakeups,
                   redis_semaphores_config config);
  ~redis_semaphores();

  // Loads the scripts (SCRIPT LOAD; redis::script loads one again when Redis answers NOSCRIPT,
  // after a restart or SCRIPT FLUSH). Throws backend_unavailable.
  awaitable<void> start();
  // Ends every wait of this object (they answer acquire_timeout, as the coordinator's shutdown)
  // and returns once they are gone.
  awaitable<void> shutdown();

  awaitable<semaphore_info> put_semaphore(std::string name, std::size_t permits);
  awaitable<semaphore_info> put_lock(std::string name);
  awaitable<semaphore_info> get_semaphore(std::string name, bool lock);
  awaitable<permit> acquire(std::string name, bool lock, acquire_request request, millis wait);
  awaitable<std::uint32_t> release(std::string name, bool lock, std::string permit_id);
  awaitable<permit> keepalive(std::string name, bool lock, std::string permit_id, millis ttl);
  awaitable<void> remove_semaphore(std::string name, bool lock);

  // Coroutines of this object now waiting for a permit (tests, metrics).
  std::size_t local_waiters() const { return waiting_.load(); }

 private:
  // A script with its name, for errors and the start-up load.
  struct lua {
    lua(std::string name, std::string source);
    std::string name, source;
    redis::script script;
  };
  struct names;
  std::vector<const lua*> scripts() const;
  names names_for(const std::string& name, bool lock) const;
  std::vector<std::string> keys_of(const names& n) const;
  std::vector<std::string> common_args(const names& n) const;
  awaitable<redis::reply> run(const lua& script, const names& n, std::vector<std::string> more);
  awaitable<permit> acquire_here(std::string name, bool lock, acquire_request request, millis wait);
  semaphore_info info_of(const std::string& name, const redis::reply& r) const;

  executor io_;
  redis::connection& conn_;
  redis_wakeups& wakeups_;
  redis_semaphores_config config_;
  lua acquire_, leave_, release_, keepalive_, put_, get_, remove_;
  std::atomic<bool> stopped_{false};
  std::atomic<std::size_t> waiting_{0};
  std::atomic<std::size_t> running_{0};  // acquire calls under way
};

}  // namespace gatherd::core
