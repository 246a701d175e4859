// The fast path of the commonest job, a plain sleep: admitted at once, one attempt that decides
// the outcome, no timeout, no cleanup. It waits as one entry in the engine's sleep queue (a
// deadline, like asyncio's timer heap) under one timer, instead of the coroutine chain of
// engine.cpp (run_job -> ... -> run_sleep), which costs several frames, a co_spawn and a timer
// per job: a gather of 10,000 sleeps admits them all in one go on the strand, and one timer
// wake-up finishes every sleep that is due. Same life cycle and observer calls as the chain:
// running at admission, attempt 1 started, slot released, finished, exited.
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
  // Equal deadlines keep their order: the hint appends, which is also the usual place.
  run.sleeping =
      sleeping_.emplace_hint(sleeping_.end(), run.admitted_at + duration, std::move(job));
  arm_sleep_timer();
}

// Takes a waiting plain sleep out of the queue; it reports `cancelled` from a handler of its
// own, as a cancelled coroutine would, not inside the caller's loop.
void engine::cancel_plain_sleep(job_run& run) {
  record_ptr job = std::move((*run.sleeping)->second);
  sleeping_.erase(*run.sleeping);
  run.sleeping.reset();
  if (sleeping_.empty()) {
    sleep_timer_.cancel();
    sleep_timer_for_.reset();
  }
  net::post(strand_,
            [this, job = std::move(job)] { plain_sleep_done(job, net::error::operation_aborted); });
}

void engine::arm_sleep_timer() {
  if (sleeping_.empty()) return;
  const auto first = sleeping_.begin()->first;
  if (sleep_timer_for_ && *sleep_timer_for_ <= first) return;  // it wakes in time already
  sleep_timer_for_ = first;
  sleep_timer_.expires_at(first);  // a wait already pending completes with operation_aborted
  sleep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // re-armed or cancelled (maybe with the engine gone): touch nothing
    sleep_timer_for_.reset();
    wake_sleepers();
  });
}

void engine::wake_sleepers() {
  const auto now = steady_clock::now();
  while (!sleeping_.empty() && sleeping_.begin()->first <= now) {
    record_ptr job = std::move(sleeping_.begin()->second);
    sleeping_.erase(sleeping_.begin());
    job->run->sleeping.reset();
    plain_sleep_done(job, {});
  }
  arm_sleep_timer();
}

void engine::plain_sleep_done(const record_ptr& job, boost::system::error_code ec) {
  job_run& run = *job->run;
  job_outcome outcome;
  if (ec || job->cancel_requested) {
    outcome = cancelled_outcome(run.cancel_reason);
  } else {
    try {
      outcome = {
          job_state::succeeded, plain_sleep_result(std::get<sleep_params>(run.spec.params)), {}};
    } catch (const job_failure& f) {
      outcome = {job_state::failed, nullptr, job_error{f.type(), f.what()}};
    }
  }
  admission_.release(*run.ticket);
  finish(*job, std::move(outcome));
  job_exited(job);
}

// Results are immutable once made: 10,000 sleeps of 100 ms that succeed share one
// {"slept_ms": 100} instead of building it 10,000 times. Throws job_failure as sleep_result does.
std::shared_ptr<const job_result> engine::plain_sleep_result(const sleep_params& params) {
  if (params.result || params.fail || params.fail_attempts > 0) {
    return std::make_shared<const job_result>(job_result{sleep_result(params, 1)});
  }
  if (!slept_result_ || slept_for_ != params.duration) {
    slept_result_ = std::make_shared<const job_result>(job_result{sleep_result(params, 1)});
    slept_for_ = params.duration;
  }
  return slept_result_;
}

}  // namespace gatherd::core
