// Helpers every coroutine test shares: elapsed time, a pause, and the error code an operation
// fails with.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <optional>
#include <utility>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"

namespace gatherd::core::test {

inline double ms_since(steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(steady_clock::now() - t0).count();
}

// Throws operation_aborted if the caller is cancelled meanwhile.
inline awaitable<void> sleep_for(millis d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(net::use_awaitable);
}

// The code of the `Error` (engine_error, primitive_error) `op` fails with; nothing if it succeeds.
template <class Error, class T>
awaitable<std::optional<decltype(std::declval<const Error&>().code())>> error_code_of(
    awaitable<T> op) {
  try {
    co_await std::move(op);
  } catch (const Error& e) {
    co_return e.code();
  }
  co_return std::nullopt;
}

}  // namespace gatherd::core::test
