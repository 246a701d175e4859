// GET /v1/ws: the upgrade. The API only admits it (a 101 reserves a session slot); the server
// then hands the connection to a WebSocket session (service/websocket/).
#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

core::awaitable<http_response> open_websocket(api_context& api, const http_request& req,
                                              const route_match&) {
  if (!req.websocket_upgrade) {
    http_response res =
        problem_response(426, "upgrade_required", "GET /v1/ws needs a WebSocket upgrade request");
    res.headers.emplace_back("Upgrade", "websocket");
    co_return res;
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
