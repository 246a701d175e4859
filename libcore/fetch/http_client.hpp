// The outbound HTTP/1.1 client that `fetch` jobs and batches use, behind a narrow interface so
// that tests (and a later networked backend) can stand in for it. One call is one attempt: retries,
// rate limits and deadlines belong to the caller (fetcher), not to the client.
#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"

namespace gatherd::core::fetch {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_request {
  std::string method = "GET";
  std::string url;  // absolute http:// or https:// URL
  header_list headers;
  std::string body;
  std::size_t max_body_bytes = 1 << 20;  // a longer body is cut: truncated = true
  millis timeout{10000};                 // the whole attempt: DNS, connect, TLS, write, read
  int max_redirects = 0;                 // 0: a 3xx is a result like any other
};

struct http_response {
  unsigned status = 0;
  header_list headers;          // as received, in order
  std::string body;             // at most max_body_bytes
  bool truncated = false;       // the body was longer than max_body_bytes
  bool reused_connection = false;
  std::string url;              // the URL that answered (differs from the request's after redirects)
};

// A request that got no HTTP response. `type` is the job error type of the contract:
//   invalid_url   not an absolute http(s) URL, or a host/port that cannot be used
//   invalid_request  a method that is not an HTTP token, a header name that is not a token,
//                 or a header value with CR, LF or NUL
//   dns           the name did not resolve
//   fetch_denied  the egress guard refused every resolved address
//   connect       no connection could be made (refused, unreachable, connect timeout), or it
//                 broke while the request was being sent
//   tls           handshake or certificate/host-name verification failed
//   timeout       the attempt ran past http_request::timeout
//   protocol      the peer answered something that is not HTTP/1.x, or closed mid-response
//   redirects     more redirects than max_redirects allowed
// Cancellation is not a fetch_error: it surfaces as boost::system::system_error(operation_aborted).
class fetch_error : public std::runtime_error {
 public:
  fetch_error(std::string type, const std::string& message)
      : std::runtime_error(message), type_(std::move(type)) {}
  const std::string& type() const { return type_; }

 private:
  std::string type_;
};

// Counters for metrics, read without locks.
struct http_client_stats {
  std::atomic<std::uint64_t> connections_open{0};    // gauge: open outbound connections
  std::atomic<std::uint64_t> connections_opened{0};  // counter
  std::atomic<std::uint64_t> connections_reused{0};  // counter: requests sent on a pooled connection
  std::atomic<std::uint64_t> egress_denied{0};       // counter: requests refused by the guard
};

class http_client {
 public:
  virtual ~http_client() = default;
  // Sends one request and reads its response (following up to max_redirects redirects).
  // Throws fetch_error; when cancelled, abandons (closes) the connection it was using and
  // throws system_error(operation_aborted). Safe to call from any thread, concurrently, from a
  // coroutine whose executor runs one handler at a time (an io_context run by one thread, or a
  // strand): the request's socket and timers use that executor.
  virtual awaitable<http_response> send(http_request request) = 0;
  virtual const http_client_stats& stats() const = 0;
};

}  // namespace gatherd::core::fetch
