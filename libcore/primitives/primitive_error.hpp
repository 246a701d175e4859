// Why a coordination primitive refused a call. The service maps each to one HTTP status.
#pragma once

#include <chrono>
#include <optional>
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
  item_too_large,       // a put larger than its queue's byte budget could ever hold (413)
  queue_bytes_full,     // a put that did not fit in its queue's max_bytes in time (429)
  queues_memory_full,   // a put that did not fit in the server's bytes for queues in time (429)
};

class primitive_error : public std::runtime_error {
 public:
  // retry_after: when the refusing state expects room again (a 429's Retry-After), computed by
  // whoever refused; none where waiting would not help.
  primitive_error(primitive_errc code, const std::string& message,
                  std::optional<std::chrono::milliseconds> retry_after = std::nullopt)
      : std::runtime_error(message), code_(code), retry_after_(retry_after) {}
  primitive_errc code() const { return code_; }
  std::optional<std::chrono::milliseconds> retry_after() const { return retry_after_; }

 private:
  primitive_errc code_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

}  // namespace gatherd::core
