// The request path without sockets: raw bytes from a client -> Beast's request parser with the
// server's limits -> http_request -> pipeline (request id, route, auth, handler, problem
// mapping) -> response. Up to four pipelined requests per input share one fresh service, so a
// request can act on what an earlier one created (by name: primitives; job ids are random).
//
// Asserted for every answer: a status in 100..599, never 5xx, a problem+json body that parses
// and names the same status for every error, JSON bodies that parse, NDJSON lines that parse,
// and header values without CR, LF or NUL.
#include <boost/beast/websocket/rfc6455.hpp>
#include <cstddef>
#include <cstdint>

#include "service/api/context.hpp"
#include "service/http/pipeline.hpp"
#include "tests/fuzz/support/check.hpp"
#include "tests/fuzz/support/http_reading.hpp"
#include "tests/fuzz/support/service_harness.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;

namespace {

constexpr int max_requests = 4;

void check_stream(service_harness& h, const service::http_response& res, std::string_view what) {
  for (const auto& piece : h.drain(res)) {
    std::string_view rest = piece;
    require(rest.ends_with('\n'), "an NDJSON piece is not whole lines", piece);
    while (!rest.empty()) {
      const auto line = rest.substr(0, rest.find('\n'));
      require(client_parse(line).has_value(), "an NDJSON line does not parse",
              std::string(what) + "\n" + std::string(line));
      rest.remove_prefix(line.size() + 1);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const service::config settings = service_harness::settings();
  service_harness h;
  byte_stream client(input);
  beast::flat_buffer buffer(read_buffer_limit(settings));  // as the server's connection
  for (int n = 0; n < max_requests; ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(settings.max_header_bytes));
    parser.body_limit(settings.max_body_bytes);
    beast::error_code ec;
    http::read_header(client, buffer, parser, ec);
    read_failure refused;
    if (!ec) refused = check_framing(parser.get());
    if (!ec && !refused.status && !parser.is_done()) http::read(client, buffer, parser, ec);
    if (ec) refused = classify(ec, settings);
    if (ec || refused.status) {
      if (!refused.status) break;  // the client left or sent nothing more: just close
      service::http_request partial;
      if (parser.is_header_done()) partial = to_request(parser.get(), "192.0.2.7:40000");
      partial.body.clear();
      const auto res = h.requests().reject(partial, refused.status, refused.code, refused.detail);
      check_response(res, "a refused request: " + refused.code);
      require(res.status >= 400 && res.status < 500, "a refusal that is not 4xx", refused.code);
      break;
    }
    const auto& message = parser.get();
    service::http_request req = to_request(message, "192.0.2.7:40000");
    req.websocket_upgrade = beast::websocket::is_upgrade(message);
    if (asks_long_cleanup(req.body)) return -1;  // see asks_long_cleanup
    const std::string what = req.method + " " + req.target;
    const service::http_response res = h.handle(std::move(req));
    check_response(res, what);
    check_stream(h, res, what);
    if (res.status == 101) {  // the server would hand the connection to a WebSocket session
      h.api().websockets.fetch_sub(1);
      break;
    }
    if (!message.keep_alive()) break;
  }
  return 0;
}
