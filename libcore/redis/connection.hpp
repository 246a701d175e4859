// A pipelined coroutine connection to one Redis server (RESP2), kept up in the background.
//
// Threading: every member may be called from any thread and any executor. The state lives on the
// connection's own strand; command() hops onto it and back (co_spawn), forwarding the caller's
// cancellation.
//
// Pipelining: any number of coroutines may call command() at once. Commands are written in the
// order their calls reached the strand, those issued while a write is under way together in the
// next write, and replies are matched to them in that order (Redis answers in order).
//
// Failure is explicit and bounded, never a hang:
// - timeout: no reply within options.timeout. Since replies come in order, a late reply means
//   every older command is late too: Redis is stalled or the network is, so the connection is
//   reset and every command pending on it fails with `timeout` as well, then a reconnect starts.
// - disconnected: while no connection is up, commands fail at once (they do not wait for the
//   reconnect: the caller answers 503 now rather than hold its client); when a connection is lost,
//   its pending commands fail with it. The message carries the last connect error.
// - closed: after close().
// - A `-ERR` reply is a reply (reply::is_error()), not an exception: scripts and MULTI need it.
// A failed command may or may not have run in Redis; nothing is retried here.
//
// Cancellation (the caller's per-operation cancellation, as by `||` with a timer): the caller
// gets operation_aborted at once. The command stays in the pipeline and may still run; its reply
// is read and dropped, so the next command still gets its own.
//
// Reconnect: in the background, with capped exponential backoff and jitter (options.hpp); each
// new connection logs in (AUTH user password, or AUTH password), SELECTs the database and answers a
// PING, all within options.timeout, before any command is sent on it. Blocking commands (BLPOP,
// XREAD BLOCK) do not belong here: a reply later than the timeout resets the connection.
#pragma once

#include <concepts>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/redis/error.hpp"
#include "libcore/redis/options.hpp"
#include "libcore/redis/reply.hpp"

namespace gatherd::core::redis {

namespace detail {
inline std::string to_arg(std::string_view s) {
  return std::string(s);
}
template <std::integral T>
std::string to_arg(T v) {
  return std::to_string(v);
}
}  // namespace detail

class connection {
 public:
  // Starts connecting at once, in the background, on a strand of `ex`.
  connection(executor ex, connection_options options);
  // Closes without waiting (pending commands fail with `closed`); destroy it before its
  // io_context. Prefer `co_await close()`, which also waits for the background work to end.
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Sends one command (`args[0]` is its name) and returns its reply, an error reply included.
  // Throws redis::error (timeout, disconnected, closed, protocol) or, when the caller is
  // cancelled, boost::system::system_error(operation_aborted).
  awaitable<reply> command(std::vector<std::string> args);

  // command("INCRBY", key, 5): strings and integers, converted before the call returns.
  // (Variadic rather than a braced list: g++ 12 mishandles braced lists inside coroutines.)
  template <class... Args>
  awaitable<reply> command(std::string_view name, const Args&... args) {
    std::vector<std::string> all;
    all.reserve(1 + sizeof...(args));
    all.emplace_back(name);
    (all.push_back(detail::to_arg(args)), ...);
    return command(std::move(all));
  }

  // Completes once connected, or throws redis::error: timeout after `within` (the message
  // carries the last connect error), closed.
  awaitable<void> wait_connected(millis within);

  // Whether a ready connection is up right now.
  bool connected() const;

  const endpoint& where() const;

  // Fails pending commands with `closed`, stops reconnecting and waits until every background
  // coroutine has ended. Idempotent.
  awaitable<void> close();

 private:
  struct state;
  std::shared_ptr<state> state_;
};

}  // namespace gatherd::core::redis
