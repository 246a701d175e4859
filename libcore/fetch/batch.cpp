#include "libcore/fetch/batch.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

namespace gatherd::core::fetch {

namespace {

// What the groups of one batch share. Each index is taken once through `next`, and its result
// slot and done flag are written only by the worker that took it; the batch reads them after
// every group has finished.
struct batch_run {
  fetcher& f;
  const batch_params& params;
  const batch_progress& progress;
  std::optional<steady_clock::time_point> deadline;
  const batch_limit* limit;
  std::vector<fetch_result> results;
  std::vector<unsigned char> done;
  std::atomic<std::size_t> next{0};

  void record(std::size_t i, fetch_result r) {
    results[i] = std::move(r);
    done[i] = 1;
    if (progress) progress(i, results[i]);
  }
};

// Takes the next request until none is left: `concurrency` of these make the batch's limit.
awaitable<void> worker(batch_run& run, std::mt19937_64& rng) {
  const std::size_t n = run.params.requests.size();
  for (std::size_t i = run.next++; i < n; i = run.next++) {
    const http_request& request = run.params.requests[i];
    fetch_result result;
    try {
      result = co_await run.f.fetch_with_retries(request, run.params.retry, run.deadline, run.limit,
                                                 rng);
    } catch (const boost::system::system_error& e) {
      if (e.code() == net::error::operation_aborted) throw;
      result.url = request.url;
      result.error = job_error{"failed", e.what()};
    } catch (const std::exception& e) {  // never let one URL fail the batch
      result.url = request.url;
      result.error = job_error{"failed", e.what()};
    }
    run.record(i, std::move(result));
  }
}

// Stops one group from outside: the batch's deadline, or a stop posted to the group's own
// thread (its timer is touched on that thread only). Shared, so that a late stop finds it.
struct group_stop {
  group_stop(const executor& ex, std::optional<steady_clock::time_point> deadline)
      : timer(ex, deadline.value_or(steady_clock::time_point::max())) {}
  net::steady_timer timer;
};

// One group: `count` workers on the group's own executor (one I/O thread), until they have
// taken every request or the group is stopped (then its requests in flight are cancelled).
awaitable<void> run_group(batch_run& run, std::size_t count, std::shared_ptr<group_stop> stop) {
  using namespace net::experimental::awaitable_operators;
  const auto ex = co_await net::this_coro::executor;
  std::mt19937_64 rng{std::random_device{}()};
  auto all_workers = [&]() -> awaitable<void> {
    std::vector<decltype(net::co_spawn(ex, worker(run, rng), net::deferred))> workers;
    for (std::size_t i = 0; i < count; ++i) {
      workers.push_back(net::co_spawn(ex, worker(run, rng), net::deferred));
    }
    auto [order, errors] =
        co_await net::experimental::make_parallel_group(std::move(workers))
            .async_wait(net::experimental::wait_for_one_error(), net::use_awaitable);
    for (std::size_t i : order) {
      if (errors[i]) std::rethrow_exception(errors[i]);
    }
  };
  co_await (all_workers() || stop->timer.async_wait(net::as_tuple(net::use_awaitable)));
}

// The executors a batch spreads over: its own first, then every other I/O thread's, no more
// than there are workers. A batch confined to one thread was bound by that thread's CPU.
std::vector<executor> group_executors(const executor& home, const std::vector<executor>& io,
                                      std::size_t workers) {
  std::vector<executor> out{home};
  const auto* home_context = &net::query(home, net::execution::context);
  for (const executor& ex : io) {
    if (out.size() >= workers) break;
    if (&net::query(ex, net::execution::context) != home_context) out.push_back(ex);
  }
  return out;
}

// Runs the workers in groups, one per executor, and waits for every group, whatever happens:
// when the caller is cancelled or a group fails, the others are stopped and still waited for,
// so that no request outlives the batch. Groups report back by posting to the batch's thread,
// which a timer wakes; not a channel: in Boost 1.81 a channel whose receive was cancelled can
// refuse a later try_send (chriskohlhoff/asio#1241), and a lost report would hang the batch.
awaitable<void> run_groups(batch_run& run, std::size_t workers, std::vector<executor> executors) {
  struct reports {  // touched on the batch's thread only
    explicit reports(const executor& home) : wake(home, steady_clock::time_point::max()) {}
    net::steady_timer wake;
    std::size_t finished = 0;
    std::exception_ptr failure;
  };
  const auto home = co_await net::this_coro::executor;
  auto state = std::make_shared<reports>(home);
  const std::size_t groups = executors.size();
  std::vector<std::shared_ptr<group_stop>> stops;
  for (std::size_t k = 0; k < groups; ++k) {
    const std::size_t count = workers / groups + (k < workers % groups ? 1 : 0);
    stops.push_back(std::make_shared<group_stop>(executors[k], run.deadline));
    net::co_spawn(executors[k], run_group(run, count, stops.back()),
                  [home, state](std::exception_ptr e) {
                    net::post(home, [state, e] {
                      ++state->finished;
                      if (e && !state->failure) state->failure = e;
                      state->wake.cancel();
                    });
                  });
  }

  bool cancelled = false;
  bool stopped = false;
  for (;;) {
    if ((co_await net::this_coro::cancellation_state).cancelled() != net::cancellation_type::none) {
      cancelled = true;  // the caller's cancellation: heard, then waited through
      co_await net::this_coro::reset_cancellation_state();
    }
    if (state->finished == groups) break;
    if ((cancelled || state->failure) && !std::exchange(stopped, true)) {
      for (std::size_t k = 0; k < groups; ++k) {
        net::post(executors[k], [stop = stops[k]] { stop->timer.cancel(); });
      }
    }
    co_await state->wake.async_wait(net::as_tuple(net::use_awaitable));
  }
  if (cancelled) throw boost::system::system_error(net::error::operation_aborted);
  if (state->failure) std::rethrow_exception(state->failure);
}

}  // namespace

awaitable<batch_outcome> run_batch(fetcher& f, batch_params params, batch_progress progress) {
  const auto ex = co_await net::this_coro::executor;
  const auto started = steady_clock::now();
  const std::size_t n = params.requests.size();

  std::unique_ptr<throttle> own_limiter;
  batch_limit limit;
  if (params.limit) {
    own_limiter = std::make_unique<throttle>(ex);
    limit = {own_limiter.get(), *params.limit, params.per_host};
  }
  batch_run run{f, params, progress, std::nullopt, params.limit ? &limit : nullptr, {}, {}};
  run.results.resize(n);
  run.done.resize(n, 0);
  if (params.deadline) run.deadline = started + *params.deadline;
  const std::size_t workers =
      std::clamp<std::size_t>(params.concurrency, 1, std::max<std::size_t>(n, 1));

  co_await run_groups(run, workers, group_executors(ex, f.executors(), workers));
  if (params.deadline) {
    for (std::size_t i = 0; i < n; ++i) {
      if (run.done[i]) continue;
      fetch_result late;
      late.url = params.requests[i].url;
      late.elapsed = std::chrono::duration_cast<millis>(steady_clock::now() - started);
      late.error = job_error{"deadline", "the batch's deadline_ms of " +
                                             std::to_string(params.deadline->count()) +
                                             " ms passed before this request finished"};
      run.record(i, std::move(late));
    }
  }

  batch_outcome outcome;
  outcome.results = std::move(run.results);
  for (const fetch_result& r : outcome.results) {
    (r.error ? outcome.summary.failed : outcome.summary.ok)++;
    outcome.summary.throttled += r.throttled;
  }
  outcome.summary.elapsed = std::chrono::duration_cast<millis>(steady_clock::now() - started);
  co_return outcome;
}

}  // namespace gatherd::core::fetch
