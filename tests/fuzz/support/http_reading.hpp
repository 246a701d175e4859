// How service/http/server.cpp turns bytes into an http_request, without a socket: the same
// Beast parser with the same limits, then the same checks. server.cpp keeps these steps
// file-local (to_request, check_framing, classify, read_buffer_limit), so they are mirrored
// here; keep them in step with it (docs/fuzzing.md says so too).
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>
#include <string>
#include <string_view>

#include "service/config.hpp"
#include "service/http/http_message.hpp"

namespace gatherd::fuzz {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// A SyncReadStream over the fuzz input: the client's bytes, then end of stream.
class byte_stream {
 public:
  using executor_type = net::any_io_executor;  // (never used: reads are synchronous)
  explicit byte_stream(std::string_view bytes) : rest_(bytes) {}

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, beast::error_code& ec) {
    if (rest_.empty()) {
      ec = net::error::eof;
      return 0;
    }
    ec = {};
    const std::size_t n = net::buffer_copy(buffers, net::buffer(rest_.data(), rest_.size()));
    rest_.remove_prefix(n);
    return n;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    beast::error_code ec;
    const std::size_t n = read_some(buffers, ec);
    if (ec) throw beast::system_error(ec);
    return n;
  }

 private:
  std::string_view rest_;
};

// Why reading failed: a status to answer before closing, or 0 to close without answering.
struct read_failure {
  unsigned status = 0;
  std::string code, detail;
};

inline read_failure classify(const beast::error_code& ec, const service::config& c) {
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return {431, "headers_too_large",
            "the request header block exceeds " + std::to_string(c.max_header_bytes) + " bytes"};
  }
  if (ec == http::error::body_limit) {
    return {413, "payload_too_large",
            "the request body exceeds " + std::to_string(c.max_body_bytes) + " bytes"};
  }
  const beast::error_code end_of_stream = http::error::end_of_stream;
  if (ec.category() == end_of_stream.category() && ec != http::error::end_of_stream &&
      ec != http::error::partial_message) {
    return {400, "invalid_request", "malformed HTTP request: " + ec.message()};
  }
  return {};
}

inline read_failure check_framing(const http::request<http::string_body>& m) {
  const auto hosts = m.count(http::field::host);
  if (hosts > 1 || (hosts == 0 && m.version() >= 11)) {
    return {400, "invalid_request", "Host header missing or repeated"};
  }
  if (m.count(http::field::transfer_encoding) == 0) return {};
  if (m.version() < 11) return {400, "invalid_request", "Transfer-Encoding on HTTP/1.0"};
  std::string codings;
  const auto [first, last] = m.equal_range(http::field::transfer_encoding);
  for (auto f = first; f != last; ++f) {
    if (!codings.empty()) codings += ',';
    codings += std::string(f->value());
  }
  std::erase_if(codings, [](char ch) { return ch == ' ' || ch == '\t'; });
  if (!beast::iequals(codings, "chunked")) {
    return {400, "unsupported_transfer_coding", "only chunked, not '" + codings + "'"};
  }
  return {};
}

inline std::size_t read_buffer_limit(const service::config& c) {
  return c.max_header_bytes + 4096;
}

inline service::http_request to_request(const http::request<http::string_body>& in,
                                        const std::string& remote) {
  service::http_request req;
  req.method = std::string(in.method_string());
  req.target = std::string(in.target());
  req.content_type = std::string(in[http::field::content_type]);
  req.accept = std::string(in[http::field::accept]);
  req.authorization = std::string(in[http::field::authorization]);
  req.request_id = std::string(in["X-Request-Id"]);
  req.websocket_key = std::string(in[http::field::sec_websocket_key]);
  req.websocket_version = std::string(in[http::field::sec_websocket_version]);
  req.remote = remote;
  req.body = in.body();
  return req;
}

}  // namespace gatherd::fuzz
