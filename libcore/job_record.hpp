// A job as the engine keeps it. Everything a finished job needs is kept compactly here; what
// only an unfinished job needs (its spec, cancellation signal, run slot) lives in `run` and
// is dropped when the job's coroutine ends, so retained jobs stay small.
// The engine's strand owns a record. Once the job is terminal, the fields snapshot() reads never
// change again: a terminal record handed to another thread (gather_progress) may be read there.
#pragma once

#include <boost/asio/cancellation_signal.hpp>
#include <boost/container/small_vector.hpp>
#include <map>
#include <memory>
#include <optional>

#include "libcore/admission.hpp"
#include "libcore/job.hpp"
#include "libcore/notifier.hpp"

namespace gatherd::core {

struct job_record;

// Plain sleeps by deadline (engine_plain_sleep.cpp): one timer for all of them.
using sleep_queue = std::multimap<steady_clock::time_point, std::shared_ptr<job_record>>;

// Told when a job reaches its terminal state (gathers, and later watchers). Held weakly by the
// job: a listener that is gone by then is skipped.
class completion_listener {
 public:
  virtual ~completion_listener() = default;
  // `key`: what the listener was registered with (a gather: the job's index in it).
  virtual void job_finished(const job_record& job, std::size_t key) = 0;
};

struct listener_entry {
  std::weak_ptr<completion_listener> listener;
  std::size_t key = 0;
};

struct job_run {
  explicit job_run(job_spec&& s) : spec(std::move(s)) {}
  job_spec spec;
  std::unique_ptr<admission::ticket> ticket;
  net::cancellation_signal cancel;
  bool cancel_emitted = false;
  std::string cancel_reason;  // the first reason given wins
  steady_clock::time_point admitted_at;
  boost::container::small_vector<listener_entry, 1> listeners;  // mostly 0 or 1
  // A plain sleep runs without a coroutine (engine_plain_sleep.cpp): its place in the engine's
  // sleep queue while it waits. Empty for other jobs, and for plain sleeps of 0 ms.
  std::optional<sleep_queue::iterator> sleeping;
};

struct job_record {
  job_id id;
  std::uint64_t seq = 0;  // creation order; the listing cursor
  job_kind kind = job_kind::sleep;
  job_state state = job_state::queued;
  bool cancel_requested = false;
  std::uint16_t attempts = 0;
  wall_clock::time_point created_at;
  wall_clock::time_point started_at;   // epoch while not started
  wall_clock::time_point finished_at;  // epoch while not finished
  job_labels labels;
  std::shared_ptr<const job_result> result;  // null until it succeeds; shared with its snapshots
  std::unique_ptr<job_error> error;
  std::string idempotency_key;
  std::string fingerprint;
  millis retention{0};
  bool registered = false;  // listed in the registry (job_registry keeps this)
  std::size_t bytes = 0;    // what the registry counts for it against its byte budget
  notifier finished;        // long-polls waiting for a terminal state
  std::unique_ptr<job_run> run;

  bool started() const { return started_at != wall_clock::time_point{}; }
  job_snapshot snapshot() const;
};

// Payload bytes (libcore/payload_bytes.hpp) of what a job holds, for the registry's budget:
// unfinished, its spec (params, labels, idempotency key and fingerprint); finished, its labels,
// key, fingerprint, result and error (the spec is gone by then). Durations, counts and other
// fixed-size fields are not payload: the count cap (max_retained) bounds those.
std::size_t spec_bytes(const job_spec& spec);
std::size_t unfinished_bytes(const job_record& job);  // from job.run's spec
std::size_t finished_bytes(const job_record& job);

}  // namespace gatherd::core
