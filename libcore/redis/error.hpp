// Why a Redis call failed. A `-ERR` reply is not one of these: it is an answer (reply::is_error),
// since scripts and pipelines need to read it; reply's accessors turn it into server_error.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace gatherd::core::redis {

enum class errc {
  timeout,           // no reply within the timeout (the connection is then reset)
  disconnected,      // not connected, or the connection was lost before the reply
  closed,            // close() was called
  protocol,          // Redis sent something that is not RESP2, or a reply nobody asked for
  server_error,      // an error reply read as a value (reply::as_integer() on `-ERR ...`)
  unexpected_reply,  // a reply of another type than the caller expected
};

class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  errc code() const { return code_; }

 private:
  errc code_;
};

// The code's name, for logs and metric labels.
inline std::string_view to_string(errc code) {
  switch (code) {
    case errc::timeout:
      return "timeout";
    case errc::disconnected:
      return "disconnected";
    case errc::closed:
      return "closed";
    case errc::protocol:
      return "protocol";
    case errc::server_error:
      return "server_error";
    case errc::unexpected_reply:
      return "unexpected_reply";
  }
  return "unknown";
}

}  // namespace gatherd::core::redis
