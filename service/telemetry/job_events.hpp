// Logs and measures the engine's job transitions, and publishes them to WebSocket watchers.
#pragma once

#include "libcore/engine_observer.hpp"
#include "service/telemetry/metrics.hpp"
#include "service/websocket/job_feed.hpp"

namespace gatherd::service {

class job_events : public core::engine_observer {
 public:
  job_events(metrics& m, job_feed& feed) : metrics_(m), feed_(feed) {}
  void job_submitted(const core::job_record& job) override;
  void job_rejected(std::string_view reason, std::size_t count) override;
  void job_started(const core::job_record& job, std::chrono::duration<double> queue_wait) override;
  void attempt_started(const core::job_record& job) override;
  void job_retrying(const core::job_record& job, const core::job_error& error,
                    core::millis backoff) override;
  void job_finished(const core::job_record& job) override;

 private:
  metrics& metrics_;
  job_feed& feed_;
};

}  // namespace gatherd::service
