// Hooks through which the service logs and measures Redis connections (no metrics library
// here). Called on the connection's strand: implementations must be quick and must not block.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "libcore/clock.hpp"
#include "libcore/redis/endpoint.hpp"

namespace gatherd::core::redis {

enum class command_outcome : std::uint8_t {
  ok,            // a reply other than an error
  error_reply,   // Redis answered `-ERR ...`
  timeout,       // no reply in time
  disconnected,  // not connected, or the connection was lost (or closed) first
  cancelled,     // the caller was cancelled first
};

inline std::string_view to_string(command_outcome o) {
  switch (o) {
    case command_outcome::ok:
      return "ok";
    case command_outcome::error_reply:
      return "error_reply";
    case command_outcome::timeout:
      return "timeout";
    case command_outcome::disconnected:
      return "disconnected";
    case command_outcome::cancelled:
      return "cancelled";
  }
  return "unknown";
}

class connection_observer {
 public:
  virtual ~connection_observer() = default;
  // A command ended. `name`: its first argument as the caller wrote it (GET, EVALSHA).
  virtual void command_done(std::string_view /*name*/, command_outcome,
                            std::chrono::duration<double> /*latency*/) {}
  // Connected and ready (logged in, database selected, answering); `reconnect` after a loss.
  virtual void connected(const endpoint&, bool /*reconnect*/) {}
  // The ready connection was lost (not reported at close()); commands pending on it have failed.
  virtual void disconnected(const endpoint&, std::string_view /*reason*/) {}
  // An attempt to connect failed; the next one starts after `retry_in`.
  virtual void connect_failed(const endpoint&, std::string_view /*reason*/, millis /*retry_in*/) {}
};

}  // namespace gatherd::core::redis
