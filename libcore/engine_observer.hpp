// Hooks through which the service logs and measures the engine. Called on the engine strand:
// implementations must be quick and must not block.
#pragma once

#include <chrono>
#include <string_view>

#include "libcore/job_record.hpp"

namespace gatherd::core {

class engine_observer {
 public:
  virtual ~engine_observer() = default;
  virtual void job_submitted(const job_record&) {}
  virtual void job_rejected(std::string_view /*reason*/, std::size_t /*count*/) {}
  virtual void job_started(const job_record&, std::chrono::duration<double> /*queue_wait*/) {}
  // Each attempt, the first included, as it begins (`attempts` already counts it).
  virtual void attempt_started(const job_record&) {}
  virtual void job_retrying(const job_record&, const job_error&, millis /*backoff*/) {}
  virtual void job_finished(const job_record&) {}
};

}  // namespace gatherd::core
