// Sends fetch requests on behalf of jobs and batches: waits for rate tokens (the batch's own
// limiter, then the server-wide limit of the host), sends through the http_client, and retries
// with backoff that honours Retry-After. Shared by every batch and fetch job of the process.
#pragma once

#include <atomic>
#include <functional>
#include <random>
#include <string_view>
#include <unordered_map>

#include "libcore/fetch/fetch_result.hpp"
#include "libcore/fetch/fetch_spec.hpp"
#include "libcore/fetch/http_client.hpp"
#include "libcore/rate_limit/rate_limiter.hpp"
#include "libcore/rate_limit/throttle.hpp"

namespace gatherd::core::fetch {

struct fetch_settings {
  std::optional<rate> host_rate;                  // every host:port; none: unlimited
  std::unordered_map<std::string, rate> host_rates;  // overrides by "host" or "host:port"
};

// Hooks for metrics; called from any thread, must be quick.
class fetch_observer {
 public:
  virtual ~fetch_observer() = default;
  // An attempt ended: `outcome` is "1xx".."5xx" or an error type (connect, timeout, ...).
  virtual void attempt_done(std::string_view /*outcome*/, double /*seconds*/) {}
  virtual void retrying() {}
  virtual void throttled(double /*seconds*/) {}
};

// A batch's own limiter and how it keys requests.
struct batch_limit {
  throttle* limiter = nullptr;
  rate limit;
  bool per_host = true;
};

// One attempt: a response or an error, and the time spent waiting for rate tokens.
struct attempt_outcome {
  std::optional<http_response> response;
  std::optional<job_error> error;
  millis throttled{0};
};

// Retried: connect errors, timeouts, 429 and 5xx.
bool retryable_status(unsigned status);
bool retryable_error(std::string_view type);
// The error message of a fetch whose retries ended on a retryable status (type http_status).
std::string exhausted_message(unsigned status, int attempts);

// Retry-After as delta-seconds or an HTTP date, relative to now; none when absent or unusable.
std::optional<millis> retry_after(const header_list& headers);

class fetcher {
 public:
  // `io`: the executors of the I/O threads (each one thread, or a strand). A fetch job's work
  // moves to one of them (off the engine strand); a batch spreads its workers over all.
  // `hosts` keeps the server-wide limits per host (settings); a batch's own limit is local.
  fetcher(http_client& client, rate_limiter& hosts, fetch_settings settings,
          std::vector<executor> io, fetch_observer* observer = nullptr);

  awaitable<attempt_outcome> attempt(http_request request, const batch_limit* batch = nullptr);

  // Attempts until a result: retries as `policy` allows, never waiting past `deadline`.
  // `request` must outlive the call (each attempt sends a copy of it).
  awaitable<fetch_result> fetch_with_retries(
      const http_request& request, const retry_policy& policy,
      std::optional<steady_clock::time_point> deadline, const batch_limit* batch,
      std::mt19937_64& rng);

  executor next_executor() {
    return io_[next_.fetch_add(1, std::memory_order_relaxed) % io_.size()];
  }
  const std::vector<executor>& executors() const { return io_; }
  fetch_observer& observer() { return *observer_; }

 private:
  std::optional<rate> host_limit(const std::string& host, const std::string& host_port) const;

  http_client& client_;
  rate_limiter& hosts_;
  fetch_settings settings_;
  std::vector<executor> io_;
  std::atomic<std::size_t> next_{0};
  fetch_observer null_observer_;
  fetch_observer* observer_;
};

// The host and host:port of a URL that parse_fetch_url (url.hpp) accepts; nothing for any other.
struct origin_key {
  std::string host;
  std::string host_port;
};
std::optional<origin_key> origin_of(std::string_view url);

}  // namespace gatherd::core::fetch
