// The HTTP request and response as handlers see them: plain values, no Beast, so that
// handlers compile fast and can be tested without sockets.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libcore/asio.hpp"

namespace gatherd::service {

// Writes the pieces of a streamed body as they come (chunked transfer coding on HTTP/1.1).
class body_writer {
 public:
  virtual ~body_writer() = default;
  // false once the client is gone: the producer should stop.
  virtual core::awaitable<bool> write(std::string piece) = 0;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_request {
  std::string method;
  std::string target;  // as received: path and query
  std::string content_type;
  std::string accept;
  std::string authorization;
  std::string request_id;  // as received; the pipeline replaces a missing or invalid one
  std::string remote;      // "address:port"
  std::string body;
  bool websocket_upgrade = false;  // asks for a WebSocket (GET, HTTP/1.1, Upgrade, Connection)
  std::string websocket_key;       // Sec-WebSocket-Key, checked by the upgrade's handler
  std::string websocket_version;   // Sec-WebSocket-Version
  // Completes once the client has gone away, never while it is still there. Set by the server;
  // the pipeline races it against handlers that may wait long (route::waits).
  std::function<core::awaitable<void>()> client_gone;
};

// Logged and counted (nginx's "client closed request"), never sent: the client is gone.
inline constexpr unsigned status_client_closed = 499;

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  header_list headers;  // beyond Content-Type, X-Request-Id and Retry-After
  // 429 and 503: when to try again, from the state that refused. The pipeline writes it as
  // Retry-After in whole seconds, within [1 s, --retry-after-max-ms].
  std::optional<std::chrono::milliseconds> retry_after;
  // When set, the body is produced piece by piece after the head instead of `body`.
  std::function<core::awaitable<void>(body_writer&)> stream;
  // When set, called if the answer could not be delivered (the client left): gives back what
  // the handler granted (a permit, leased queue items).
  std::function<void()> undelivered;
  // Dropped only once the answer is written: what the handler answered from (a large parsed
  // request, the snapshots of 10,000 jobs) and whose destruction would otherwise come first.
  std::vector<std::shared_ptr<const void>> release_after_write;
};

// Parsed pieces of the target and the route, filled in by the router.
struct route_match {
  std::string_view route;  // the route's pattern, e.g. "/v1/jobs/{id}": a bounded metric label
  std::vector<std::string> path_params;
  std::vector<std::pair<std::string, std::string>> query;  // percent-decoded
};

}  // namespace gatherd::service
