// The job model: what a client asks for (job_spec), where a job is in its life (job_state),
// and how it ended (job_outcome). A job_snapshot is the immutable copy handed to encoders.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "libcore/clock.hpp"
#include "libcore/fetch/fetch_spec.hpp"
#include "libcore/job_id.hpp"
#include "libcore/retry_policy.hpp"

namespace gatherd::core {

using json = nlohmann::json;

struct job_result;  // job_result.hpp

enum class job_state : std::uint8_t { queued, running, succeeded, failed, cancelled, timed_out };
inline constexpr job_state all_job_states[] = {job_state::queued,    job_state::running,
                                               job_state::succeeded, job_state::failed,
                                               job_state::cancelled, job_state::timed_out};

constexpr bool is_terminal(job_state s) {
  return s >= job_state::succeeded;
}
std::string_view to_string(job_state s);
std::optional<job_state> parse_job_state(std::string_view s);

// `fetch_batch` jobs are made by POST /v1/fetch with `async: true`, never submitted directly.
enum class job_kind : std::uint8_t { sleep, compute, fetch, fetch_batch };
inline constexpr job_kind all_job_kinds[] = {job_kind::sleep, job_kind::compute, job_kind::fetch,
                                             job_kind::fetch_batch};

std::string_view to_string(job_kind k);
std::optional<job_kind> parse_job_kind(std::string_view s);

// Simulated I/O: sleeps, then succeeds or fails as asked; on cancellation awaits its cleanup.
struct sleep_params {
  millis duration{0};
  std::optional<json> result;
  std::optional<std::string> fail;
  int fail_attempts = 0;
  millis cleanup{0};
};

// CPU-bound work, run in chunks on the worker pool.
struct compute_params {
  enum class operation : std::uint8_t { primes, sha256 };
  operation op = operation::primes;
  std::uint64_t n = 0;       // primes: count primes <= n
  std::string data;          // sha256: input of round 1
  std::uint64_t rounds = 1;  // sha256: rounds of hashing
};

using fetch_params = fetch::fetch_params;        // one outbound request
using fetch_batch_params = fetch::batch_params;  // a whole batch
using job_params = std::variant<sleep_params, compute_params, fetch_params,
                                fetch_batch_params>;  // index == job_kind

using job_labels = std::vector<std::pair<std::string, std::string>>;

struct job_spec {
  job_params params;
  std::optional<millis> timeout;          // whole job, from admission, across attempts
  std::optional<millis> attempt_timeout;  // one attempt
  retry_policy retry;
  std::string idempotency_key;  // empty: none
  std::string fingerprint;      // identifies the spec for idempotent resubmission
  job_labels labels;
  std::optional<millis> retention;

  job_kind kind() const { return static_cast<job_kind>(params.index()); }
};

struct job_error {
  std::string type;  // failed, timeout, cancelled, ...
  std::string message;
  friend bool operator==(const job_error&, const job_error&) = default;
};

// Thrown by a job kind when an attempt fails: retried if attempts remain and the failure is
// retryable, after the backoff or `retry_after` (a server's Retry-After), whichever is longer.
class job_failure : public std::runtime_error {
 public:
  job_failure(std::string type, const std::string& message, bool retryable = true,
              std::optional<millis> retry_after = std::nullopt)
      : std::runtime_error(message),
        type_(std::move(type)),
        retryable_(retryable),
        retry_after_(retry_after) {}
  const std::string& type() const { return type_; }
  bool retryable() const { return retryable_; }
  std::optional<millis> retry_after() const { return retry_after_; }

 private:
  std::string type_;
  bool retryable_;
  std::optional<millis> retry_after_;
};

struct job_outcome {
  job_state state = job_state::succeeded;
  std::shared_ptr<const job_result> result;  // what the job's record and snapshots will share
  std::optional<job_error> error;
};

// A cancelled job's outcome; `reason` (the first one given) becomes the error message.
job_outcome cancelled_outcome(const std::string& reason = {});

struct job_snapshot {
  job_id id;
  std::uint64_t seq = 0;
  job_kind kind = job_kind::sleep;
  job_state state = job_state::queued;
  bool cancel_requested = false;
  int attempts = 0;
  job_labels labels;
  wall_clock::time_point created_at;
  std::optional<wall_clock::time_point> started_at;
  std::optional<wall_clock::time_point> finished_at;
  // A succeeded job's result (null otherwise). Immutable and shared by every snapshot of the
  // job: a large result (a fetch batch's) is not copied per read.
  std::shared_ptr<const job_result> result;
  std::optional<job_error> error;
};

}  // namespace gatherd::core
