// Shared by the coordinator's tests (primitives_test, primitive_limits_test): an io_context on
// two threads (the coordinator hops onto its strand from anywhere), a coordinator, run(body)
// that waits for the body and stops the sweeper afterwards, and small builders.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "coro_test.hpp"
#include "libcore/primitives/coordinator.hpp"

namespace gatherd::core::test {

template <class T>
awaitable<std::optional<primitive_errc>> error_of(awaitable<T> op) {
  return error_code_of<primitive_error>(std::move(op));
}

inline acquire_request holder(std::string name, millis ttl = millis{30000},
                              bool reentrant = false) {
  acquire_request r;
  r.holder = std::move(name);
  r.ttl = ttl;
  r.reentrant = reentrant;
  return r;
}

// (Variadic, not an initializer_list: g++ 12 mishandles braced lists inside coroutines.)
template <class... V>
std::vector<nlohmann::json> items(V... values) {
  std::vector<nlohmann::json> out;
  (out.emplace_back(values), ...);
  return out;
}

template <class... S>
std::vector<std::string> strings(S... values) {
  std::vector<std::string> out;
  (out.emplace_back(values), ...);
  return out;
}

// A fatal check usable inside a coroutine (ASSERT_* cannot `return` from one).
inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("requirement failed: " + what);
}

class PrimitivesTest : public ::testing::Test {
 protected:
  PrimitivesTest() : PrimitivesTest(config()) {}
  explicit PrimitivesTest(coordinator_config c) : coord_(io_.get_executor(), c) {}

  static coordinator_config config() {
    coordinator_config c;
    c.max_primitives = 8;
    c.max_waiters = 4;
    return c;
  }

  template <class F>
  void run(F body) {
    coord_.start();
    auto done = net::co_spawn(io_, body(), net::use_future);
    std::thread second([this] { io_.run(); });
    std::thread first([this] { io_.run(); });
    try {
      done.get();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "test body threw: " << e.what();
    }
    net::co_spawn(io_, coord_.shutdown(), net::use_future).get();
    first.join();
    second.join();
  }

  coordinator& coord() { return coord_; }

  net::io_context io_;
  coordinator coord_;
};

}  // namespace gatherd::core::test
