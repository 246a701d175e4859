#include "service/telemetry/job_events.hpp"

#include "service/telemetry/log.hpp"

namespace gatherd::service {

namespace {

log::event transition(const core::job_record& job, log::level lvl = log::level::info,
                      std::string_view msg = "job.transition") {
  log::event e(lvl, msg);
  if (!e.enabled()) return e;  // no id text to make (runs for every job transition)
  e.add("job_id", job.id.to_string())
      .add("kind", core::to_string(job.kind))
      .add("state", core::to_string(job.state))
      .add("attempt", static_cast<int>(job.attempts));
  return e;
}

}  // namespace

void job_events::job_submitted(const core::job_record& job) {
  metrics_.job_submitted(job.kind);
  feed_.publish(job);
  auto e = log::debug("job.submitted");
  if (e.enabled()) e.add("job_id", job.id.to_string()).add("kind", core::to_string(job.kind));
}

void job_events::job_rejected(std::string_view reason, std::size_t count) {
  metrics_.job_rejected(reason, count);
  log::warn("job.rejected").add("reason", reason).add("count", count);
}

void job_events::job_started(const core::job_record& job,
                             std::chrono::duration<double> queue_wait) {
  metrics_.job_started(queue_wait.count());
  transition(job).add("queue_wait_ms", queue_wait.count() * 1000);
}

void job_events::attempt_started(const core::job_record& job) {
  feed_.publish(job);  // watchers see `running` with each attempt's number
}

void job_events::job_retrying(const core::job_record& job, const core::job_error& error,
                              core::millis backoff) {
  metrics_.job_retried(job.kind);
  transition(job, log::level::info, "job.retry")
      .add("error_type", error.type)
      .add("error", error.message)
      .add("retry_in_ms", static_cast<std::int64_t>(backoff.count()));
}

void job_events::job_finished(const core::job_record& job) {
  const double seconds =
      job.started() ? std::chrono::duration<double>(job.finished_at - job.started_at).count() : 0.0;
  metrics_.job_finished(job.kind, job.state, seconds);
  feed_.publish(job);
  auto e = transition(
      job, job.state == core::job_state::succeeded ? log::level::info : log::level::warn);
  e.add("duration_ms", seconds * 1000).add("cancel_requested", job.cancel_requested);
  if (job.error) e.add("error_type", job.error->type).add("error", job.error->message);
}

}  // namespace gatherd::service
