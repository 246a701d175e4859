// Wake-ups across replicas: one pub/sub connection per process (a redis::subscriber) subscribed
// to one pattern, `<prefix>:wake:*`, and a local map from channel to the coroutines of this
// process that wait on it.
//
// A script that frees something PUBLISHes on the primitive's channel the ids of the waiters that
// may take it now (or `*`: everyone re-checks); the message wakes those ids' local watches. Every
// (re)subscription (on_ready) wakes every watch, since messages published meanwhile are lost.
// A watch is a hint, never the truth: its owner re-reads Redis when woken and also re-checks on a
// timer of its own, so a lost message delays a waiter but never strands it.
//
// The pattern is subscribed once, at start, rather than one channel per waiter: nothing to undo
// when a waiter leaves (an unsubscribe racing a later subscribe of the same channel could
// otherwise leave a new waiter deaf), and a waiter is subscribed before its first attempt at no
// cost. The price: every replica receives the wake-ups of every primitive, a short message only
// when something is freed while someone waits.
#pragma once

#include <memory>
#include <string>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"
#include "libcore/redis/options.hpp"

namespace gatherd::core {

namespace redis {
class subscriber;
}

class redis_wakeups {
  struct shared;

 public:
  // A registered waiter; use it on the executor it was made for, destroy it there (unregisters).
  class watch {
   public:
    ~watch();
    watch(const watch&) = delete;
    watch& operator=(const watch&) = delete;

    // Returns when woken (at once if woken since the last wait), at `until`, or when the caller
    // is cancelled. Never throws for those.
    awaitable<void> wait_until(steady_clock::time_point until);

    struct entry;  // shared with the wake-up handlers

   private:
    friend class redis_wakeups;
    watch(std::shared_ptr<shared> owner, std::shared_ptr<entry> e);
    std::shared_ptr<shared> owner_;
    std::shared_ptr<entry> entry_;
  };

  // Starts the subscriber (in the background) on `ex`. `prefix` as the keys': the pattern is
  // `<prefix>:wake:*`.
  redis_wakeups(executor ex, redis::connection_options options, std::string prefix);
  ~redis_wakeups();
  redis_wakeups(const redis_wakeups&) = delete;
  redis_wakeups& operator=(const redis_wakeups&) = delete;

  // Adds the pattern to the subscriber's set (subscribed now if connected, else on connect).
  awaitable<void> start();
  awaitable<void> wait_ready(millis within);
  bool ready() const;
  awaitable<void> close();

  // The channel of one primitive: `<prefix>:wake:<kind>:<name>`.
  std::string channel(std::string_view kind, std::string_view name) const;

  // Registers `id` on `channel`; wakes are delivered on `strand` (the caller's executor).
  std::unique_ptr<watch> watch_channel(std::string channel, std::string id, executor strand);

  // Wakes every watch of this process (shutdown, tests).
  void wake_all();

 private:
  std::string prefix_;
  std::shared_ptr<shared> shared_;
  std::unique_ptr<redis::subscriber> sub_;
};

}  // namespace gatherd::core
