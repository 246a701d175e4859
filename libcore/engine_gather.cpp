// engine::gather: resolves ids, admits inline specs (all or nothing), then waits on job
// completions until the return condition, the failure rule or the timeout ends the wait.
#include <algorithm>
#include <boost/asio/this_coro.hpp>
#include <utility>

#include "libcore/engine.hpp"

namespace gatherd::core {

std::string_view to_string(gather_outcome o) {
  switch (o) {
    case gather_outcome::completed:
      return "completed";
    case gather_outcome::failed:
      return "failed";
    case gather_outcome::timed_out:
      return "timed_out";
    case gather_outcome::abandoned:
      return "abandoned";
  }
  return "completed";
}

namespace {

// Records completions of the gathered jobs in order and wakes the gathering coroutine when
// a completion may end its wait (not on every one: a gather of 10,000 jobs wakes once).
class gather_state : public completion_listener {
 public:
  gather_state(std::vector<job_registry::record_ptr> jobs, const gather_options& options,
               gather_progress progress)
      : jobs_(std::move(jobs)),
        options_(options),
        progress_(std::move(progress)),
        is_done_(jobs_.size(), false) {
    done_.reserve(jobs_.size());
  }

  // Jobs already final count as done at once, in the order they finished.
  void take_finished() {
    std::vector<std::size_t> finished;
    for (std::size_t i = 0; i < jobs_.size(); ++i) {
      if (is_terminal(jobs_[i]->state)) finished.push_back(i);
    }
    std::stable_sort(finished.begin(), finished.end(), [&](std::size_t a, std::size_t b) {
      return jobs_[a]->finished_at < jobs_[b]->finished_at;
    });
    for (std::size_t i : finished) mark(i);
  }

  // Registered once per index (a job listed twice is told twice, in index order).
  void job_finished(const job_record&, std::size_t index) override {
    mark(index);
    if (may_end_wait()) wake.notify_all();
  }

  bool may_end_wait() const {
    if (all_done() || options_.when == return_when::first_completed) return true;
    return any_failed() && (options_.when == return_when::first_exception ||
                            options_.cancel_on_error || !options_.return_exceptions);
  }

  const std::vector<job_registry::record_ptr>& jobs() const { return jobs_; }
  const std::vector<std::size_t>& done() const { return done_; }
  bool all_done() const { return done_.size() == jobs_.size(); }
  bool any_failed() const { return failures_ > 0; }
  bool is_done(std::size_t i) const { return is_done_[i]; }

  notifier wake;

 private:
  void mark(std::size_t i) {
    if (is_done_[i]) return;
    is_done_[i] = true;
    done_.push_back(i);
    if (jobs_[i]->state != job_state::succeeded) ++failures_;
    if (progress_.done) progress_.done(i, jobs_[i]);
  }

  std::vector<job_registry::record_ptr> jobs_;
  gather_options options_;
  gather_progress progress_;
  std::vector<bool> is_done_;
  std::vector<std::size_t> done_;
  std::size_t failures_ = 0;
};

}  // namespace

awaitable<gather_result> engine::gather(std::vector<gather_entry> entries, gather_options options,
                                        gather_progress progress) {
  return net::co_spawn(strand_, do_gather(std::move(entries), options, std::move(progress)),
                       net::use_awaitable);
}

awaitable<gather_result> engine::do_gather(std::vector<gather_entry> entries,
                                           gather_options options, gather_progress progress) {
  const auto started = steady_clock::now();
  // Cancelling the caller (its client went away) abandons the gather: checked, never thrown.
  co_await net::this_coro::throw_if_cancelled(false);
  const net::cancellation_state caller = co_await net::this_coro::cancellation_state;
  // Unknown ids are refused before anything is submitted.
  std::vector<record_ptr> jobs(entries.size());
  std::vector<job_spec*> specs;  // admitted in place: a spec is a few hundred bytes
  std::vector<std::size_t> spec_slots;
  specs.reserve(entries.size());
  spec_slots.reserve(entries.size());
  std::vector<std::size_t> created;  // inline specs that made a new job (not an idempotent replay)
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (const auto* id = std::get_if<job_id>(&entries[i])) {
      jobs[i] = registry_.find(*id);
      if (!jobs[i]) {
        throw engine_error(engine_errc::not_found,
                           "no job " + id->to_string() + " (jobs[" + std::to_string(i) + "])");
      }
    } else {
      specs.push_back(&std::get<job_spec>(entries[i]));
      spec_slots.push_back(i);
    }
  }
  if (!specs.empty()) {
    auto admitted = admit_all(specs);
    for (std::size_t k = 0; k < admitted.size(); ++k) {
      jobs[spec_slots[k]] = admitted[k].first;
      if (admitted[k].second) created.push_back(spec_slots[k]);
    }
  }
  std::vector<gather_entry>().swap(entries);  // freed while the jobs run, not after

  if (progress.started) progress.started();
  auto state = std::make_shared<gather_state>(jobs, options, std::move(progress));
  state->take_finished();
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (!is_terminal(jobs[i]->state)) jobs[i]->run->listeners.push_back({state, i});
  }

  const auto deadline =
      options.timeout ? started + *options.timeout : steady_clock::time_point::max();
  gather_outcome outcome = gather_outcome::completed;
  bool cancel_rest = false;
  for (;;) {
    // The failure rules first: a failure ends the wait as `failed` even if it was the last job.
    if (state->any_failed() && options.cancel_on_error) {
      outcome = gather_outcome::failed;
      cancel_rest = true;
      break;
    }
    if (state->any_failed() && !options.return_exceptions &&
        options.when == return_when::all_completed) {
      outcome = gather_outcome::failed;
      break;
    }
    if (state->all_done()) break;
    if (options.when == return_when::first_completed && !state->done().empty()) break;
    if (options.when == return_when::first_exception && state->any_failed()) break;
    if (steady_clock::now() >= deadline) {
      outcome = gather_outcome::timed_out;
      break;
    }
    if (caller.cancelled() != net::cancellation_type::none) {
      outcome = gather_outcome::abandoned;
      break;
    }
    co_await state->wake.wait_until(deadline);
  }

  // Failures that ended (or came before the end of) the wait; jobs the gather cancels below
  // are reported as done, but never as its first error.
  const std::size_t decided = state->done().size();
  if (outcome == gather_outcome::abandoned) {
    // Nobody will read the answer: stop the jobs this gather submitted, without waiting.
    for (std::size_t i : created) {
      if (!state->is_done(i)) request_cancel(*jobs[i], "its gather's client went away");
    }
  }
  // An early end cancels what is left when asked, and reports it after its cleanup.
  if (outcome != gather_outcome::abandoned && !state->all_done() &&
      (cancel_rest || options.cancel_pending)) {
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (!state->is_done(i)) request_cancel(*jobs[i], "cancelled by its gather");
    }
    while (!state->all_done()) {
      co_await state->wake.wait_until(steady_clock::now() + std::chrono::seconds(1));
    }
  }

  // Leave no listener behind on jobs that outlive this gather.
  for (const auto& job : jobs) {
    if (!job->run) continue;
    auto& listeners = job->run->listeners;
    listeners.erase(std::remove_if(listeners.begin(), listeners.end(),
                                   [&](const listener_entry& entry) {
                                     const auto listener = entry.listener.lock();
                                     return !listener || listener == state;
                                   }),
                    listeners.end());
  }

  gather_result result;
  result.outcome = outcome;
  result.jobs.reserve(jobs.size());
  for (const auto& job : jobs) result.jobs.push_back(job->snapshot());
  result.done = state->done();
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (!state->is_done(i)) result.pending.push_back(i);
  }
  for (std::size_t k = 0; k < decided; ++k) {
    const std::size_t i = result.done[k];
    if (result.jobs[i].state != job_state::succeeded) {
      result.first_error = gather_error{i, result.jobs[i].id,
                                        result.jobs[i].error.value_or(job_error{
                                            std::string(to_string(result.jobs[i].state)), ""})};
      break;
    }
  }
  result.elapsed = std::chrono::duration_cast<millis>(steady_clock::now() - started);
  co_return result;
}

}  // namespace gatherd::core
