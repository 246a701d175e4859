// Why the engine refused a request. The service maps each to one HTTP status, in one place.
#pragma once

#include <stdexcept>
#include <string>

namespace gatherd::core {

enum class engine_errc {
  queue_full,
  not_found,
  already_finished,
  idempotency_conflict,
  shutting_down
};

class engine_error : public std::runtime_error {
 public:
  engine_error(engine_errc code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  engine_errc code() const { return code_; }

 private:
  engine_errc code_;
};

}  // namespace gatherd::core
