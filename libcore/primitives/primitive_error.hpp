// Why a coordination primitive refused a call. The service maps each to one HTTP status.
#pragma once

#include <stdexcept>
#include <string>

namespace gatherd::core {

enum class primitive_errc {
  not_found,        // no primitive of that name (404)
  not_held,         // release/keepalive of a permit that is unknown, expired or over-released (409)
  acquire_timeout,  // no permit within wait_ms (408)
  wait_timeout,     // a barrier or event wait ran out (408)
  too_many_waiters,     // the primitive's waiter cap (429)
  too_many_primitives,  // the server-wide cap (429)
  queue_full,           // a put that did not fit in time (429)
  invalid,              // an argument out of range for this primitive (400)
};

class primitive_error : public std::runtime_error {
 public:
  primitive_error(primitive_errc code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  primitive_errc code() const { return code_; }

 private:
  primitive_errc code_;
};

}  // namespace gatherd::core
