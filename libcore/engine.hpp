// The engine: asyncio's event loop for jobs. Its state (registry, admission, jobs) is owned by
// one strand; every public call hops onto it, so callers on any thread may use it concurrently.
// Jobs run as coroutines on that strand; compute work runs on a separate worker pool.
#pragma once

#include <atomic>
#include <boost/unordered/unordered_flat_set.hpp>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "libcore/admission.hpp"
#include "libcore/asio.hpp"
#include "libcore/engine_error.hpp"
#include "libcore/engine_observer.hpp"
#include "libcore/gather.hpp"
#include "libcore/job_registry.hpp"
#include "libcore/job_result.hpp"
#include "libcore/worker_pool.hpp"

namespace gatherd::core {

namespace fetch {
class fetcher;
}

struct engine_config {
  std::size_t max_running = 64;
  std::size_t max_queued = 10000;
  std::size_t max_retained = 100000;
  // Payload bytes of every job held (specs, labels, results, errors): job_registry's budget.
  std::size_t max_job_bytes = std::size_t{512} << 20;
  millis default_retention{600000};
  std::size_t compute_threads = 2;
  millis sweep_interval{1000};
  // On shutdown, how long the jobs cancelled after the grace may take to clean up before the
  // engine stops waiting for them (a sleep's cleanup_ms may ask for a day).
  millis shutdown_cleanup_limit{5000};
};

// What shutdown could not end gracefully.
struct shutdown_report {
  std::size_t cleanups_cut = 0;  // jobs still cleaning up at the limit: cancelled a second time
  std::size_t jobs_left = 0;     // jobs that did not end even then (never seen: a kind's bug)
};

struct submission {
  job_snapshot job;
  bool created = true;  // false: an idempotent resubmission returned the existing job
};

class engine {
 public:
  // `fetcher` serves the fetch kinds; without one they fail.
  engine(executor io, engine_config config, engine_observer* observer = nullptr,
         fetch::fetcher* fetcher = nullptr);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Starts the retention sweeper.
  void start();

  awaitable<submission> submit(job_spec spec);
  // All or nothing: either every spec is admitted (or replayed by idempotency key) or none.
  awaitable<std::vector<submission>> submit_batch(std::vector<job_spec> specs);
  // Waits up to `wait` for the job to finish, then returns it as it is.
  awaitable<job_snapshot> get(job_id id, millis wait = millis{0});
  awaitable<job_page> list(job_query query);
  // `reason` becomes the cancelled job's error message.
  awaitable<job_snapshot> cancel(job_id id, std::string reason = {});
  // Cancels the job if it is unfinished and forgets it.
  awaitable<void> remove(job_id id);
  // Waits for the jobs named or submitted by `entries` (see gather.hpp). Unknown ids are refused
  // (not_found) before anything is submitted; inline specs are admitted all or nothing.
  awaitable<gather_result> gather(std::vector<gather_entry> entries, gather_options options,
                                  gather_progress progress = {});
  // Refuses new jobs, lets unfinished ones run for `grace`, then cancels them and awaits their
  // cleanup for up to config.shutdown_cleanup_limit. Cleanups still running then are cancelled
  // in turn (asyncio: a second cancel interrupts a `finally` that awaits) and get one more
  // second. Returns with every job coroutine ended unless `jobs_left`: then frames that hold
  // references into the engine remain, and the caller must end the process without unwinding.
  awaitable<shutdown_report> shutdown(millis grace);

  // Read without a hop, for gauges.
  std::size_t queued() const { return queued_.load(std::memory_order_relaxed); }
  std::size_t running() const { return running_.load(std::memory_order_relaxed); }
  std::size_t retained() const { return retained_.load(std::memory_order_relaxed); }
  std::size_t job_bytes() const { return job_bytes_.load(std::memory_order_relaxed); }

 private:
  using record_ptr = job_registry::record_ptr;

  awaitable<submission> do_submit(job_spec spec);
  awaitable<std::vector<submission>> do_submit_batch(std::vector<job_spec> specs);
  awaitable<job_snapshot> do_get(job_id id, millis wait);
  awaitable<job_page> do_list(job_query query);
  awaitable<job_snapshot> do_cancel(job_id id, std::string reason);
  awaitable<void> do_remove(job_id id);
  awaitable<shutdown_report> do_shutdown(millis grace);
  awaitable<void> wait_for_no_unfinished(millis limit);
  awaitable<gather_result> do_gather(std::vector<gather_entry> entries, gather_options options,
                                     gather_progress progress);
  awaitable<void> sweep();

  // Admits every spec or none (replaying idempotent resubmissions); throws when they do not fit.
  // Moves from the specs it admits.
  std::vector<std::pair<record_ptr, bool>> admit_all(std::span<job_spec* const> specs);
  // An existing job for an idempotent resubmission of `spec`, or null; throws on a conflict.
  record_ptr replay(const job_spec& spec) const;
  void check_room(std::size_t n);
  // Room for `n` new jobs of `bytes` (spec_bytes) in max_job_bytes; evicts finished jobs for it.
  void check_bytes(std::size_t bytes, std::size_t n);
  record_ptr create(job_spec&& spec, instant admitted);
  awaitable<void> run_job(record_ptr job);
  awaitable<job_outcome> run_admitted(record_ptr job);
  awaitable<job_outcome> run_attempts(record_ptr job);
  awaitable<job_result> run_attempt(record_ptr job, int attempt);
  awaitable<job_result> run_kind(const job_spec& spec, int attempt);
  // The fast path of a plain sleep (engine_plain_sleep.cpp): a deadline in one queue, no coroutine.
  static bool is_plain_sleep(const job_spec& spec);
  void start_plain_sleep(record_ptr job);
  void cancel_plain_sleep(job_run& run);
  void plain_sleep_done(const record_ptr& job, boost::system::error_code ec);
  std::shared_ptr<const job_result> plain_sleep_result(const sleep_params& params);
  void arm_sleep_timer();
  void wake_sleepers();
  void mark_running(job_record& job, instant started = instant::now());
  void request_cancel(job_record& job, std::string reason);
  void finish(job_record& job, job_outcome outcome);
  void job_exited(record_ptr job);
  void update_gauges();
  record_ptr find_or_throw(const job_id& id) const;

  net::strand<executor> strand_;
  engine_config config_;
  engine_observer* observer_;
  engine_observer null_observer_;
  admission admission_;
  job_registry registry_;
  worker_pool pool_;
  fetch::fetcher* fetcher_;
  boost::unordered_flat_set<job_record*> unfinished_;  // jobs whose coroutine has not ended
  notifier idle_;                                      // woken as job coroutines end
  net::steady_timer sweep_timer_;
  sleep_queue sleeping_;           // plain sleeps by deadline
  net::steady_timer sleep_timer_;  // armed for the first deadline of sleeping_
  std::optional<steady_clock::time_point> sleep_timer_for_;  // the deadline it is armed for
  // The default result of the last plain sleep, shared by the next ones of the same duration.
  std::shared_ptr<const job_result> slept_result_;
  millis slept_for_{-1};
  std::mt19937_64 rng_;
  std::uint64_t next_seq_ = 1;
  std::size_t n_queued_ = 0;
  std::size_t n_running_ = 0;
  bool accepting_ = true;
  std::atomic<std::size_t> queued_{0}, running_{0}, retained_{0}, job_bytes_{0};
};

}  // namespace gatherd::core
