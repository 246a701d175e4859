#include "libcore/fetch/batch.hpp"

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

namespace gatherd::core::fetch {

namespace {

// What the workers of one batch share. Everything runs on one executor: no locks.
struct batch_run {
  fetcher& f;
  const batch_params& params;
  const batch_progress& progress;
  std::optional<steady_clock::time_point> deadline;
  const batch_limit* limit;
  std::vector<fetch_result> results;
  std::vector<bool> done;
  std::size_t next = 0;
  std::mt19937_64 rng{std::random_device{}()};

  void record(std::size_t i, fetch_result r) {
    results[i] = std::move(r);
    done[i] = true;
    if (progress) progress(i, results[i]);
  }
};

// Takes the next request until none is left: `concurrency` of these make the batch's limit.
awaitable<void> worker(batch_run& run) {
  while (run.next < run.params.requests.size()) {
    const std::size_t i = run.next++;
    const http_request& request = run.params.requests[i];
    fetch_result result;
    try {
      result = co_await run.f.fetch_with_retries(request, run.params.retry, run.deadline,
                                                 run.limit, run.rng);
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

awaitable<void> run_workers(batch_run& run, std::size_t count) {
  const auto ex = co_await net::this_coro::executor;
  std::vector<decltype(net::co_spawn(ex, worker(run), net::deferred))> workers;
  for (std::size_t i = 0; i < count; ++i) {
    workers.push_back(net::co_spawn(ex, worker(run), net::deferred));
  }
  auto [order, errors] = co_await net::experimental::make_parallel_group(std::move(workers))
                             .async_wait(net::experimental::wait_for_one_error(),
                                         net::use_awaitable);
  for (std::size_t i : order) {
    if (errors[i]) std::rethrow_exception(errors[i]);
  }
}

// The workers, stopped when the deadline comes.
awaitable<void> run_workers_until(batch_run& run, std::size_t count,
                                  steady_clock::time_point deadline) {
  using namespace net::experimental::awaitable_operators;
  net::steady_timer timer(co_await net::this_coro::executor, deadline);
  co_await (run_workers(run, count) || timer.async_wait(net::use_awaitable));
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
  run.done.resize(n, false);
  const std::size_t workers = std::clamp<std::size_t>(params.concurrency, 1, std::max<std::size_t>(n, 1));

  if (params.deadline) {
    run.deadline = started + *params.deadline;
    co_await run_workers_until(run, workers, *run.deadline);
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
  } else {
    co_await run_workers(run, workers);
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

json to_json(const batch_outcome& outcome) {
  json results = json::array();
  for (const fetch_result& r : outcome.results) results.push_back(to_json(r));
  return json{{"results", std::move(results)}, {"summary", to_json(outcome.summary)}};
}

}  // namespace gatherd::core::fetch
