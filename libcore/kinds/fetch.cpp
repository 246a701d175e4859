#include "libcore/kinds/fetch.hpp"

#include "libcore/fetch/batch.hpp"

namespace gatherd::core {

namespace {
fetch::fetcher& fetcher_of(const attempt_context& ctx) {
  if (!ctx.fetcher) throw job_failure("failed", "this server has no outbound HTTP client", false);
  return *ctx.fetcher;
}
}  // namespace

awaitable<fetch::fetch_result> run_fetch(const fetch_params& params, attempt_context ctx) {
  fetch::fetcher& f = fetcher_of(ctx);
  const auto started = steady_clock::now();
  fetch::attempt_outcome a =
      co_await net::co_spawn(f.next_executor(), f.attempt(params.request), net::use_awaitable);
  if (a.error) {
    throw job_failure(a.error->type, a.error->message, fetch::retryable_error(a.error->type));
  }
  fetch::http_response& response = *a.response;
  // A retryable status fails the attempt when retries were asked for: retried while attempts
  // remain, and on the last one the job fails (its error names the status).
  if (fetch::retryable_status(response.status) && ctx.max_attempts > 1) {
    throw job_failure("http_status",
                      ctx.attempt < ctx.max_attempts
                          ? "the server answered " + std::to_string(response.status)
                          : fetch::exhausted_message(response.status, ctx.attempt),
                      true, fetch::retry_after(response.headers));
  }
  fetch::fetch_result result;
  result.url = params.request.url;
  result.status = response.status;
  result.headers = std::move(response.headers);
  result.body = std::move(response.body);
  result.truncated = response.truncated;
  result.attempts = ctx.attempt;
  result.throttled = a.throttled;
  result.elapsed = std::chrono::duration_cast<millis>(steady_clock::now() - started);
  co_return result;
}

awaitable<fetch::batch_outcome> run_fetch_batch(const fetch_batch_params& params, attempt_context ctx) {
  fetch::fetcher& f = fetcher_of(ctx);
  fetch::batch_outcome outcome =
      co_await net::co_spawn(f.next_executor(), fetch::run_batch(f, params), net::use_awaitable);
  co_return outcome;
}

}  // namespace gatherd::core
