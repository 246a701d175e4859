#include "libcore/engine.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>
#include <unordered_map>

#include "libcore/kinds/compute.hpp"
#include "libcore/kinds/fetch.hpp"
#include "libcore/kinds/sleep.hpp"

namespace gatherd::core {

namespace {

using net::experimental::make_parallel_group;
using net::experimental::wait_for_one;

[[noreturn]] void throw_cancelled() {
  throw boost::system::system_error(net::error::operation_aborted);
}

bool is_cancellation(const boost::system::system_error& e) {
  return e.code() == net::error::operation_aborted;
}

// How a job body that ended with an exception ended.
job_outcome outcome_of(std::exception_ptr error, const std::string& cancel_reason) {
  try {
    std::rethrow_exception(error);
  } catch (const job_failure& f) {
    return {job_state::failed, nullptr, job_error{f.type(), f.what()}};
  } catch (const boost::system::system_error& e) {
    if (is_cancellation(e)) return cancelled_outcome(cancel_reason);
    return {job_state::failed, nullptr, job_error{"failed", e.what()}};
  } catch (const std::exception& e) {
    return {job_state::failed, nullptr, job_error{"failed", e.what()}};
  }
}

std::string ms_text(millis ms) {
  return std::to_string(ms.count()) + " ms";
}

}  // namespace

engine::engine(executor io, engine_config config, engine_observer* observer,
               fetch::fetcher* fetcher)
    : strand_(net::make_strand(io)),
      config_(config),
      observer_(observer ? observer : &null_observer_),
      admission_(config.max_running, config.max_queued, strand_),
      registry_(config.max_retained, config.max_job_bytes),
      pool_(config.compute_threads),
      fetcher_(fetcher),
      sweep_timer_(strand_),
      sleep_timer_(strand_),
      rng_(std::random_device{}()) {}

engine::~engine() = default;

void engine::start() {
  net::co_spawn(strand_, sweep(), net::detached);
}

// Public calls: hop onto the strand, run there, resume the caller on its own executor.
awaitable<submission> engine::submit(job_spec spec) {
  return net::co_spawn(strand_, do_submit(std::move(spec)), net::use_awaitable);
}
awaitable<std::vector<submission>> engine::submit_batch(std::vector<job_spec> specs) {
  return net::co_spawn(strand_, do_submit_batch(std::move(specs)), net::use_awaitable);
}
awaitable<job_snapshot> engine::get(job_id id, millis wait) {
  return net::co_spawn(strand_, do_get(id, wait), net::use_awaitable);
}
awaitable<job_page> engine::list(job_query query) {
  return net::co_spawn(strand_, do_list(std::move(query)), net::use_awaitable);
}
awaitable<job_snapshot> engine::cancel(job_id id, std::string reason) {
  return net::co_spawn(strand_, do_cancel(id, std::move(reason)), net::use_awaitable);
}
awaitable<void> engine::remove(job_id id) {
  return net::co_spawn(strand_, do_remove(id), net::use_awaitable);
}
awaitable<shutdown_report> engine::shutdown(millis grace) {
  return net::co_spawn(strand_, do_shutdown(grace), net::use_awaitable);
}

awaitable<submission> engine::do_submit(job_spec spec) {
  if (!accepting_) {
    observer_->job_rejected("shutting_down", 1);
    throw engine_error(engine_errc::shutting_down, "the server is shutting down");
  }
  if (auto existing = replay(spec)) co_return submission{existing->snapshot(), false};
  check_room(1);
  check_bytes(spec_bytes(spec), 1);
  co_return submission{create(std::move(spec), instant::now())->snapshot(), true};
}

awaitable<std::vector<submission>> engine::do_submit_batch(std::vector<job_spec> specs) {
  std::vector<job_spec*> refs;
  refs.reserve(specs.size());
  for (auto& spec : specs) refs.push_back(&spec);
  std::vector<submission> out;
  out.reserve(specs.size());
  for (auto& [job, created] : admit_all(refs)) out.push_back({job->snapshot(), created});
  co_return out;
}

std::vector<std::pair<engine::record_ptr, bool>> engine::admit_all(
    std::span<job_spec* const> specs) {
  if (!accepting_) {
    observer_->job_rejected("shutting_down", specs.size());
    throw engine_error(engine_errc::shutting_down, "the server is shutting down");
  }
  // Check everything before creating anything: keys replayed from the registry, and keys
  // repeated within the batch (the same spec again replays the first, a different one conflicts).
  std::size_t fresh = 0, fresh_bytes = 0;
  std::unordered_map<std::string_view, std::string_view> batch_keys;  // key -> fingerprint
  for (const job_spec* each : specs) {
    const job_spec& spec = *each;
    if (replay(spec)) continue;
    if (!spec.idempotency_key.empty()) {
      auto [it, inserted] = batch_keys.emplace(spec.idempotency_key, spec.fingerprint);
      if (!inserted) {
        if (it->second != spec.fingerprint) {
          throw engine_error(engine_errc::idempotency_conflict,
                             "idempotency_key '" + spec.idempotency_key +
                                 "' appears twice in the batch with different specs");
        }
        continue;
      }
    }
    ++fresh;
    fresh_bytes += spec_bytes(spec);
  }
  check_room(fresh);
  check_bytes(fresh_bytes, fresh);
  std::vector<std::pair<record_ptr, bool>> out;
  out.reserve(specs.size());
  const instant admitted = instant::now();
  for (job_spec* spec : specs) {
    if (auto existing = replay(*spec)) {  // also a key repeated within the batch
      out.emplace_back(std::move(existing), false);
    } else {
      out.emplace_back(create(std::move(*spec), admitted), true);
    }
  }
  return out;
}

engine::record_ptr engine::replay(const job_spec& spec) const {
  if (spec.idempotency_key.empty()) return nullptr;
  auto existing = registry_.find_by_key(spec.idempotency_key);
  if (existing && existing->fingerprint != spec.fingerprint) {
    throw engine_error(engine_errc::idempotency_conflict,
                       "idempotency_key '" + spec.idempotency_key + "' was already used by job " +
                           existing->id.to_string() + " with a different spec");
  }
  return existing;
}

void engine::check_room(std::size_t n) {
  if (admission_.has_room(n)) return;
  observer_->job_rejected("queue_full", n);
  throw engine_error(engine_errc::queue_full,
                     std::to_string(admission_.running()) + " jobs running and " +
                         std::to_string(admission_.queued()) + " queued: no room for " +
                         std::to_string(n) + " more",
                     admission_.time_until_room(n));
}

void engine::check_bytes(std::size_t bytes, std::size_t n) {
  if (registry_.make_room(bytes)) return;
  const std::string held =
      std::to_string(registry_.unfinished_bytes()) + " bytes of unfinished jobs";
  if (bytes > registry_.max_bytes()) {
    observer_->job_rejected("job_too_large", n);
    throw engine_error(engine_errc::job_too_large,
                       std::to_string(bytes) + " bytes of job data can never fit in the server's " +
                           std::to_string(registry_.max_bytes()) + " bytes for jobs");
  }
  observer_->job_rejected("jobs_memory_full", n);
  throw engine_error(engine_errc::jobs_memory_full,
                     held + " of the server's " + std::to_string(registry_.max_bytes()) +
                         " for jobs: no room for " + std::to_string(bytes) + " more");
}

engine::record_ptr engine::create(job_spec&& spec, instant admitted) {
  auto job = std::make_shared<job_record>();
  job->id = job_id::random();
  job->seq = next_seq_++;
  job->kind = spec.kind();
  job->created_at = admitted.wall;
  job->labels = std::move(spec.labels);
  job->retention = spec.retention.value_or(config_.default_retention);
  if (!spec.idempotency_key.empty()) {
    job->idempotency_key = spec.idempotency_key;
    job->fingerprint = spec.fingerprint;
  }
  job->run = std::make_unique<job_run>(std::move(spec));
  job->run->ticket = admission_.admit();
  job->run->admitted_at = admitted.steady;
  registry_.add(job);
  unfinished_.insert(job.get());
  ++n_queued_;
  observer_->job_submitted(*job);
  if (job->run->ticket->granted()) mark_running(*job, admitted);
  update_gauges();

  if (job->run->ticket->granted() && is_plain_sleep(job->run->spec)) {
    start_plain_sleep(job);
    return job;
  }
  auto on_exit = [this, job](std::exception_ptr) {
    // co_spawn still holds the cancellation slot while this handler runs: drop the run state
    // (and its signal) only afterwards.
    net::post(strand_, [this, job] { job_exited(job); });
  };
  net::co_spawn(strand_, run_job(job),
                net::bind_cancellation_slot(job->run->cancel.slot(), std::move(on_exit)));
  return job;
}

awaitable<void> engine::run_job(record_ptr job) {
  job_outcome outcome;
  if (const auto timeout = job->run->spec.timeout) {
    // wait_for semantics: the deadline cancels the body, which runs its cleanup first.
    net::steady_timer deadline(strand_, job->run->admitted_at + *timeout);
    auto [order, error, result, timer_ec] =
        co_await make_parallel_group(net::co_spawn(strand_, run_admitted(job), net::deferred),
                                     deadline.async_wait(net::deferred))
            .async_wait(wait_for_one(), net::use_awaitable);
    if (!error) {
      outcome = std::move(result);  // the work ended on its own, even if the deadline came too
    } else if (order[0] == 1 && !timer_ec) {
      outcome = {job_state::timed_out, nullptr,
                 job_error{"timeout", "the job exceeded timeout_ms of " + ms_text(*timeout)}};
    } else {
      outcome = outcome_of(error, job->run->cancel_reason);
    }
  } else {
    try {
      outcome = co_await run_admitted(job);
    } catch (...) {
      outcome = outcome_of(std::current_exception(), job->run->cancel_reason);
    }
  }
  finish(*job, std::move(outcome));
}

awaitable<job_outcome> engine::run_admitted(record_ptr job) {
  admission::ticket& ticket = *job->run->ticket;
  co_await admission_.wait(ticket);
  struct slot_guard {
    admission& owner;
    admission::ticket& held;
    ~slot_guard() { owner.release(held); }
  } guard{admission_, ticket};
  if (job->cancel_requested) throw_cancelled();  // cancelled before it began: never start it
  if (job->state == job_state::queued) mark_running(*job);
  co_return co_await run_attempts(job);
}

awaitable<job_outcome> engine::run_attempts(record_ptr job) {
  const retry_policy& retry = job->run->spec.retry;
  for (int attempt = 1;; ++attempt) {
    job->attempts = static_cast<std::uint16_t>(attempt);
    observer_->attempt_started(*job);
    job_error error;
    bool retryable = true;
    std::optional<millis> retry_after;
    try {
      // (co_await kept out of braced initialisers: g++ 12 miscompiles those)
      job_result result = co_await run_attempt(job, attempt);
      co_return job_outcome{
          job_state::succeeded, std::make_shared<const job_result>(std::move(result)), {}};
    } catch (const job_failure& f) {
      error = {f.type(), f.what()};
      retryable = f.retryable();
      retry_after = f.retry_after();
    }
    if (attempt >= retry.max_attempts || !retryable) {
      co_return job_outcome{job_state::failed, nullptr, error};
    }
    const millis wait = std::max(retry.backoff(attempt, rng_), retry_after.value_or(millis{0}));
    observer_->job_retrying(*job, error, wait);
    net::steady_timer backoff(strand_, wait);
    co_await backoff.async_wait(net::use_awaitable);  // a cancel here ends the job: no retry
  }
}

awaitable<job_result> engine::run_attempt(record_ptr job, int attempt) {
  const job_spec& spec = job->run->spec;
  if (!spec.attempt_timeout) co_return co_await run_kind(spec, attempt);

  net::steady_timer limit(strand_, *spec.attempt_timeout);
  auto [order, error, result, timer_ec] =
      co_await make_parallel_group(net::co_spawn(strand_, run_kind(spec, attempt), net::deferred),
                                   limit.async_wait(net::deferred))
          .async_wait(wait_for_one(), net::use_awaitable);
  if (!error) co_return std::move(result);
  auto state = co_await net::this_coro::cancellation_state;
  if (state.cancelled() != net::cancellation_type::none) std::rethrow_exception(error);
  if (order[0] == 1 && !timer_ec) {
    throw job_failure("timeout", "attempt " + std::to_string(attempt) +
                                     " exceeded attempt_timeout_ms of " +
                                     ms_text(*spec.attempt_timeout));
  }
  std::rethrow_exception(error);
}

awaitable<job_result> engine::run_kind(const job_spec& spec, int attempt) {
  // (Each result is named before it is wrapped: g++ 12 mishandles a co_await inside a braced
  // initialiser.)
  const job_params& params = spec.params;
  attempt_context ctx{attempt, spec.retry.max_attempts, pool_, fetcher_};
  try {
    if (const auto* sleep = std::get_if<sleep_params>(&params)) {
      json value = co_await run_sleep(*sleep, ctx);
      co_return job_result{std::move(value)};
    }
    if (const auto* fetch = std::get_if<fetch_params>(&params)) {
      fetch::fetch_result value = co_await run_fetch(*fetch, ctx);
      co_return job_result{std::move(value)};
    }
    if (const auto* batch = std::get_if<fetch_batch_params>(&params)) {
      fetch::batch_outcome value = co_await run_fetch_batch(*batch, ctx);
      co_return job_result{std::move(value)};
    }
    json value = co_await run_compute(std::get<compute_params>(params), ctx);
    co_return job_result{std::move(value)};
  } catch (const job_failure&) {
    throw;
  } catch (const boost::system::system_error& e) {
    if (is_cancellation(e)) throw;
    throw job_failure("failed", e.what());
  } catch (const std::exception& e) {
    throw job_failure("failed", e.what());
  }
}

void engine::mark_running(job_record& job, instant started) {
  job.state = job_state::running;
  job.started_at = started.wall;
  --n_queued_;
  ++n_running_;
  observer_->job_started(job, started.steady - job.run->admitted_at);
  update_gauges();
}

void engine::request_cancel(job_record& job, std::string reason) {
  if (is_terminal(job.state)) return;
  job_run& run = *job.run;
  if (!job.cancel_requested) {
    job.cancel_requested = true;
    run.cancel_reason = std::move(reason);
  }
  if (job.state == job_state::queued) {  // a queued job is cancelled at once
    admission_.withdraw(*run.ticket);
    finish(job, cancelled_outcome(run.cancel_reason));
  }
  if (!run.cancel_emitted) {
    run.cancel_emitted = true;
    run.cancel.emit(net::cancellation_type::terminal);
    if (run.sleeping) cancel_plain_sleep(run);
  }
}

void engine::finish(job_record& job, job_outcome outcome) {
  if (is_terminal(job.state)) return;  // e.g. cancelled while queued, before its coroutine ended
  (job.state == job_state::queued ? n_queued_ : n_running_)--;
  job.state = outcome.state;
  job.result = std::move(outcome.result);
  if (outcome.error) job.error = std::make_unique<job_error>(std::move(*outcome.error));
  job.finished_at = wall_clock::now();
  registry_.retain(job, steady_clock::now() + job.retention);
  job.finished.notify_all();
  for (const auto& [weak, key] : job.run->listeners) {
    if (auto listener = weak.lock()) listener->job_finished(job, key);
  }
  job.run->listeners.clear();
  observer_->job_finished(job);
  update_gauges();
}

void engine::job_exited(record_ptr job) {
  job->run.reset();
  unfinished_.erase(job.get());
  idle_.notify_all();
}

awaitable<job_snapshot> engine::do_get(job_id id, millis wait) {
  auto job = find_or_throw(id);
  const auto deadline = steady_clock::now() + wait;
  while (!is_terminal(job->state) && steady_clock::now() < deadline) {
    co_await job->finished.wait_until(deadline);
  }
  if (registry_.find(id) != job) {
    throw engine_error(engine_errc::not_found, "job " + id.to_string() + " was deleted");
  }
  co_return job->snapshot();
}

awaitable<job_page> engine::do_list(job_query query) {
  co_return registry_.list(query);
}

awaitable<job_snapshot> engine::do_cancel(job_id id, std::string reason) {
  auto job = find_or_throw(id);
  if (is_terminal(job->state)) {
    throw engine_error(
        engine_errc::already_finished,
        "job " + id.to_string() + " already finished as " + std::string(to_string(job->state)));
  }
  request_cancel(*job, std::move(reason));
  co_return job->snapshot();
}

awaitable<void> engine::do_remove(job_id id) {
  auto job = find_or_throw(id);
  request_cancel(*job, "the job was deleted");
  registry_.remove(id);
  update_gauges();
  co_return;
}

awaitable<void> engine::wait_for_no_unfinished(millis limit) {
  const auto deadline = steady_clock::now() + limit;
  while (!unfinished_.empty() && steady_clock::now() < deadline) {
    co_await idle_.wait_until(deadline);
  }
}

awaitable<shutdown_report> engine::do_shutdown(millis grace) {
  accepting_ = false;
  sweep_timer_.cancel();
  co_await wait_for_no_unfinished(grace);
  const std::vector<job_record*> left(unfinished_.begin(), unfinished_.end());
  for (job_record* job : left) request_cancel(*job, "the server shut down");
  co_await wait_for_no_unfinished(config_.shutdown_cleanup_limit);

  shutdown_report report;
  report.cleanups_cut = unfinished_.size();
  for (job_record* job : std::vector<job_record*>(unfinished_.begin(), unfinished_.end())) {
    job->run->cancel.emit(net::cancellation_type::terminal);
  }
  co_await wait_for_no_unfinished(std::chrono::seconds(1));
  report.jobs_left = unfinished_.size();
  if (report.jobs_left == 0) {
    sleep_timer_.cancel();
    sleep_timer_for_.reset();
  }
  co_return report;
}

awaitable<void> engine::sweep() {
  while (accepting_) {
    sweep_timer_.expires_after(config_.sweep_interval);
    auto [ec] = co_await sweep_timer_.async_wait(net::as_tuple(net::use_awaitable));
    if (ec) break;
    registry_.expire(steady_clock::now());
    update_gauges();
  }
}

void engine::update_gauges() {
  queued_.store(n_queued_, std::memory_order_relaxed);
  running_.store(n_running_, std::memory_order_relaxed);
  retained_.store(registry_.retained(), std::memory_order_relaxed);
  job_bytes_.store(registry_.bytes(), std::memory_order_relaxed);
}

engine::record_ptr engine::find_or_throw(const job_id& id) const {
  auto job = registry_.find(id);
  if (!job) throw engine_error(engine_errc::not_found, "no job " + id.to_string());
  return job;
}

}  // namespace gatherd::core
