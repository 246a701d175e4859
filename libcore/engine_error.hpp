// Why the engine refused a request. The service maps each to one HTTP status, in one place.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

namespace gatherd::core {

enum class engine_errc {
  queue_full,
  not_found,
  already_finished,
  idempotency_conflict,
  shutting_down,
  job_too_large,     // a submission whose data alone exceeds max_job_bytes (413)
  jobs_memory_full,  // unfinished jobs' data leaves no room for it (429)
};

class engine_error : public std::runtime_error {
 public:
  // retry_after: when the refusing state expects room again (a 429's Retry-After), computed by
  // whoever refused; none where waiting would not help.
  engine_error(engine_errc code, const std::string& message,
        std::optional<std::chrono::milliseconds> retry_after = std::nullopt)
      : std::runtime_error(message), code_(code), retry_after_(retry_after) {}
  engine_errc code() const { return code_; }
  std::optional<std::chrono::milliseconds> retry_after() const { return retry_after_; }

 private:
  engine_errc code_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

}  // namespace gatherd::core
