// The shared state could not be reached (Redis down, stalled past --backend-timeout-ms, or
// refusing): what a backend implementation throws instead of its client's errors, so the engine,
// the fetcher and the service answer 503 `backend_unavailable` without knowing which backend runs.
#pragma once

#include <stdexcept>
#include <string>

namespace gatherd::core {

class backend_unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace gatherd::core
