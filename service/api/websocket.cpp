// GET /v1/ws: the upgrade. The API only admits it (a 101 reserves a session slot); the server
// then hands the connection to a WebSocket session (service/websocket/).
#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

// RFC 6455 4.2.1: the key is the base64 of 16 bytes: 22 significant characters, the last of
// which carries only 2 bits, then "==".
bool valid_websocket_key(std::string_view key) {
  constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (key.size() != 24 || !key.ends_with("==")) return false;
  for (std::size_t i = 0; i < 22; ++i) {
    const auto value = alphabet.find(key[i]);
    if (value == std::string_view::npos) return false;
    if (i == 21 && (value & 0x0f) != 0) return false;
  }
  return true;
}

core::awaitable<http_response> open_websocket(api_context& api, const http_request& req,
                                              const route_match&) {
  if (!req.websocket_upgrade) {
    http_response res =
        problem_response(426, "upgrade_required", "GET /v1/ws needs a WebSocket upgrade request");
    res.headers.emplace_back("Upgrade", "websocket");
    co_return res;
  }
  if (req.websocket_version != "13") {  // RFC 6455 4.4: name the version we speak
    http_response res = problem_response(
        426, "unsupported_websocket_version",
        "Sec-WebSocket-Version must be 13, not '" + req.websocket_version + "'");
    res.headers.emplace_back("Upgrade", "websocket");  // RFC 9110: every 426 names the protocol
    res.headers.emplace_back("Sec-WebSocket-Version", "13");
    co_return res;
  }
  if (!valid_websocket_key(req.websocket_key)) {
    throw invalid_request("Sec-WebSocket-Key must be the base64 of 16 bytes");
  }
  if (api.ready.load() == readiness::draining) {
    throw request_error(503, "shutting_down", "the server is shutting down");
  }
  const std::size_t cap = api.settings.ws_max_connections;
  if (api.websockets.fetch_add(1) >= cap) {
    api.websockets.fetch_sub(1);
    throw request_error(429, "too_many_connections",
                        "more than " + std::to_string(cap) + " WebSocket connections are open");
  }
  http_response res;
  res.status = 101;
  res.content_type.clear();
  co_return res;
}

}  // namespace

void add_websocket_routes(route_table& t) {
  t.add("GET", "/v1/ws", open_websocket);
}

}  // namespace gatherd::service
