#include "libcore/kinds/sleep.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

namespace gatherd::core {

awaitable<json> run_sleep(const sleep_params& params, attempt_context ctx) {
  net::steady_timer timer(co_await net::this_coro::executor, params.duration);
  boost::system::error_code ec;
  if (params.duration.count() > 0) {
    std::tie(ec) = co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  } else {  // asyncio.sleep(0): a suspension point without a timer
    co_await net::post(net::use_awaitable);
    auto state = co_await net::this_coro::cancellation_state;
    if (state.cancelled() != net::cancellation_type::none) ec = net::error::operation_aborted;
  }
  if (ec) {
    // Cancelled: model a `finally:` block that awaits, then report the cancellation.
    if (params.cleanup.count() > 0) {
      co_await net::this_coro::reset_cancellation_state();
      timer.expires_after(params.cleanup);
      co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    }
    throw boost::system::system_error(net::error::operation_aborted);
  }
  co_return sleep_result(params, ctx.attempt);
}

json sleep_result(const sleep_params& params, int attempt) {
  if (attempt <= params.fail_attempts) {
    throw job_failure("failed", "attempt " + std::to_string(attempt) +
                                    " failed (fail_attempts " +
                                    std::to_string(params.fail_attempts) + ")");
  }
  if (params.fail) throw job_failure("failed", *params.fail);
  if (params.result) return *params.result;
  json result = json::object();  // (cheaper than an initializer list: one per finished sleep)
  result["slept_ms"] = params.duration.count();
  return result;
}

}  // namespace gatherd::core
