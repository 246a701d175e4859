// Logs and measures the engine's job transitions.
#pragma once

#include "libcore/engine_observer.hpp"
#include "service/metrics.hpp"

namespace gatherd::service {

class job_events : public core::engine_observer {
 public:
  explicit job_events(metrics& m) : metrics_(m) {}
  void job_submitted(const core::job_record& job) override;
  void job_rejected(std::string_view reason, std::size_t count) override;
  void job_started(const core::job_record& job, std::chrono::duration<double> queue_wait) override;
  void job_retrying(const core::job_record& job, const core::job_error& error,
                    core::millis backoff) override;
  void job_finished(const core::job_record& job) override;

 private:
  metrics& metrics_;
};

}  // namespace gatherd::service
