// Helpers every coroutine test shares: elapsed time, a pause, the error code an operation
// fails with, and the time scale of slow builds.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <utility>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"

namespace gatherd::core::test {

inline double ms_since(steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(steady_clock::now() - t0).count();
}

// GATHERD_TEST_TIME_SCALE (the tsan test preset sets it; 1 otherwise): how many times longer
// than usual a hop onto a strand or a step of work may take. For the durations whose gaps a
// test relies on and for latency bounds; never for assertions on order, states or counts.
inline double time_scale() {
  static const double scale = [] {
    const char* text = std::getenv("GATHERD_TEST_TIME_SCALE");
    const double s = text ? std::atof(text) : 1.0;
    return s > 1.0 ? s : 1.0;
  }();
  return scale;
}
inline millis scaled(millis d) {
  return millis{std::llround(static_cast<double>(d.count()) * time_scale())};
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
