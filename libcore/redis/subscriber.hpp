// Redis pub/sub on a connection of its own (a subscribed RESP2 connection can run nothing else).
//
// Threading: like connection, every member may be called from anywhere; the state lives on the
// subscriber's strand, and the handlers are called there (quick, non-blocking, non-throwing).
//
// Subscriptions are a set the subscriber keeps: subscribe()/psubscribe() add to it, the
// unsubscribes remove from it, and every new connection (the first, and each after a loss)
// subscribes to the whole set again, then calls on_ready. Messages published while no connection
// was subscribed are lost (Redis keeps none), so a user should subscribe first, read the state it
// waits on, and read it again at every on_ready(reconnect = true).
//
// Health: the subscriber PINGs when it has heard nothing for options.timeout; a confirmation or
// PONG later than options.timeout resets the connection, and it reconnects with backoff like
// connection does (AUTH included; pub/sub ignores the database).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/redis/error.hpp"
#include "libcore/redis/options.hpp"

namespace gatherd::core::redis {

struct message {
  std::string channel;
  std::string payload;
  std::string pattern;  // the PSUBSCRIBE pattern it matched; empty for a SUBSCRIBE channel
};

struct subscriber_handlers {
  std::function<void(const message&)> on_message;
  // The whole subscription set is confirmed on a new connection: from now on nothing published
  // is missed. `reconnect`: a connection was lost before, and messages with it.
  std::function<void(bool reconnect)> on_ready;
};

class subscriber {
 public:
  // Starts connecting at once, in the background, on a strand of `ex`.
  subscriber(executor ex, connection_options options, subscriber_handlers handlers);
  // Closes without waiting; destroy it before its io_context. Prefer `co_await close()`.
  ~subscriber();
  subscriber(const subscriber&) = delete;
  subscriber& operator=(const subscriber&) = delete;

  // Adds to the set and completes once Redis has confirmed every one (messages published after
  // that are delivered). Throws redis::error: disconnected when no connection is up (the names
  // stay in the set and are subscribed on reconnect, announced by on_ready), timeout, closed,
  // server_error; operation_aborted if the caller is cancelled (the names stay in the set).
  // Precondition: non-empty.
  awaitable<void> subscribe(std::vector<std::string> channels);
  awaitable<void> psubscribe(std::vector<std::string> patterns);

  // Removes from the set and, when connected, waits for Redis to confirm. Errors as above,
  // except that without a connection there is nothing to undo, so no error.
  awaitable<void> unsubscribe(std::vector<std::string> channels);
  awaitable<void> punsubscribe(std::vector<std::string> patterns);

  // Completes once the subscriber is ready (connected, the set subscribed), or throws
  // redis::error: timeout after `within`, closed.
  awaitable<void> wait_ready(millis within);

  bool ready() const;

  // Stops reconnecting, closes, fails pending calls with `closed` and waits until every
  // background coroutine has ended. Idempotent.
  awaitable<void> close();

 private:
  struct state;
  std::shared_ptr<state> state_;
};

}  // namespace gatherd::core::redis
