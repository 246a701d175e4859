// What the Redis client's tests share: a runner for a test body on an io_context with two
// threads (the client hops onto its strands from anywhere), options for a server, and an
// observer that counts what it is told.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "../support/coro_test.hpp"
#include "../support/redis_server.hpp"
#include "libcore/redis/connection.hpp"
#include "libcore/redis/error.hpp"

namespace gatherd::core::redis::test {

using core::test::ms_since;
using core::test::redis_server;
using core::test::scaled;
using core::test::sleep_for;
using core::test::time_scale;

// Runs `body()` (an awaitable) on an io_context served by two threads; fails the test if it
// throws or does not end within `limit`.
template <class F>
void run_io(F body, millis limit = millis{60000}) {
  net::io_context io;
  auto guard = net::make_work_guard(io);
  std::thread first([&] { io.run(); });
  std::thread second([&] { io.run(); });
  auto done = net::co_spawn(io, body(), net::use_future);
  if (done.wait_for(scaled(limit)) != std::future_status::ready) {
    ADD_FAILURE() << "test body did not end within " << scaled(limit).count() << " ms";
    io.stop();
  } else {
    try {
      done.get();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "test body threw: " << e.what();
    }
  }
  guard.reset();
  first.join();
  second.join();
}

// A fatal check usable inside a coroutine (ASSERT_* cannot `return` from one).
inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("requirement failed: " + what);
}

inline connection_options options_for(const std::string& url, millis timeout = millis{1000}) {
  connection_options o;
  o.where = endpoint::parse(url);
  o.timeout = scaled(timeout);
  o.reconnect_min = millis{20};
  o.reconnect_max = scaled(millis{300});
  return o;
}

// The error code `op` fails with; nothing if it succeeds.
template <class T>
awaitable<std::optional<errc>> error_of(awaitable<T> op) {
  return core::test::error_code_of<error>(std::move(op));
}

// Counts what a connection reports. Called on the connection's strand, read from the test.
class counting_observer : public connection_observer {
 public:
  void command_done(std::string_view, command_outcome o, std::chrono::duration<double>) override {
    std::lock_guard lock(mutex_);
    ++outcomes_[o];
  }
  void connected(const endpoint&, bool reconnect) override {
    ++connects;
    if (reconnect) ++reconnects;
  }
  void disconnected(const endpoint&, std::string_view) override { ++disconnects; }
  void connect_failed(const endpoint&, std::string_view, millis) override { ++connect_failures; }

  int outcome(command_outcome o) const {
    std::lock_guard lock(mutex_);
    auto it = outcomes_.find(o);
    return it == outcomes_.end() ? 0 : it->second;
  }

  std::atomic<int> connects{0}, reconnects{0}, disconnects{0}, connect_failures{0};

 private:
  mutable std::mutex mutex_;
  std::map<command_outcome, int> outcomes_;
};

// Polls `condition` until it holds or `within` has passed; returns whether it held.
template <class C>
awaitable<bool> eventually(C condition, millis within) {
  const auto deadline = steady_clock::now() + scaled(within);
  while (!condition()) {
    if (steady_clock::now() > deadline) co_return false;
    co_await sleep_for(millis{5});
  }
  co_return true;
}

}  // namespace gatherd::core::redis::test
