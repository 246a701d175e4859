// The fast path of the commonest job, a plain sleep: admitted at once, one attempt that decides
// the outcome, no timeout, no cleanup. It runs as a timer with a completion handler instead of
// the coroutine chain of engine.cpp (run_job -> ... -> run_sleep), which costs several frames
// and a co_spawn per job: a gather of 10,000 sleeps admits them all in one go on the strand.
// Same life cycle and observer calls as the chain: running at admission, attempt 1 started,
// slot released, finished, exited.
#include <boost/asio/post.hpp>

#include "libcore/engine.hpp"
#include "libcore/kinds/sleep.hpp"

namespace gatherd::core {

bool engine::is_plain_sleep(const job_spec& spec) {
  const auto* sleep = std::get_if<sleep_params>(&spec.params);
  if (!sleep || spec.timeout || spec.attempt_timeout || sleep->cleanup.count() > 0) return false;
  // One attempt decides: either no retry, or nothing that could fail.
  return spec.retry.max_attempts == 1 || (!sleep->fail && sleep->fail_attempts == 0);
}

// Precondition: the job holds a run slot (it is running) and is_plain_sleep(its spec).
void engine::start_plain_sleep(record_ptr job) {
  job->attempts = 1;
  observer_->attempt_started(*job);
  job_run& run = *job->run;
  const millis duration = std::get<sleep_params>(run.spec.params).duration;
  if (duration.count() == 0) {  // asyncio.sleep(0): a suspension point without a timer
    net::post(strand_, [this, job = std::move(job)] { plain_sleep_done(job, {}); });
    return;
  }
  run.sleep_timer.emplace(strand_, duration);
  run.sleep_timer->async_wait(
      [this, job = std::move(job)](boost::system::error_code ec) { plain_sleep_done(job, ec); });
}

void engine::plain_sleep_done(const record_ptr& job, boost::system::error_code ec) {
  job_run& run = *job->run;
  job_outcome outcome;
  if (ec || job->cancel_requested) {  // a cancel that came after the timer fired still counts
    outcome = cancelled_outcome(run.cancel_reason);
  } else {
    try {
      outcome = {job_state::succeeded, sleep_result(std::get<sleep_params>(run.spec.params), 1),
                 {}};
    } catch (const job_failure& f) {
      outcome = {job_state::failed, nullptr, job_error{f.type(), f.what()}};
    }
  }
  admission_.release(*run.ticket);
  finish(*job, std::move(outcome));
  job_exited(job);  // drops `run`, this timer included: safe, its handler has left it
}

}  // namespace gatherd::core
