// Health, readiness, metrics and the contract: what load balancers, Prometheus and client
// generators read. Outside /v1/, so without auth.
#include "service/api/context.hpp"
#include "service/api/openapi_text.hpp"
#include "service/api/routes.hpp"

namespace gatherd::service {

namespace {

core::awaitable<http_response> healthz(api_context&, const http_request&, const route_match&) {
  co_return text_response(200, R"({"status":"ok"})");
}

core::awaitable<http_response> readyz(api_context& api, const http_request&, const route_match&) {
  switch (api.ready.load()) {
    case readiness::ready:
      co_return text_response(200, R"({"status":"ready"})");
    case readiness::starting:
      co_return text_response(503, R"({"status":"starting"})");
    case readiness::draining:
      break;
  }
  co_return text_response(503, R"({"status":"draining"})");
}

core::awaitable<http_response> metrics_text(api_context& api, const http_request&,
                                            const route_match&) {
  http_response res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  res.body = api.meter.scrape();
  co_return res;
}

core::awaitable<http_response> openapi(api_context&, const http_request&, const route_match&) {
  http_response res;
  res.content_type = "application/yaml";
  res.body = std::string(openapi_text());
  co_return res;
}

}  // namespace

void add_probe_routes(route_table& t) {
  t.add("GET", "/healthz", healthz);
  t.add("GET", "/readyz", readyz);
  t.add("GET", "/metrics", metrics_text);
}

void add_operation_routes(route_table& t) {
  add_probe_routes(t);
  t.add("GET", "/openapi.yaml", openapi);
}

}  // namespace gatherd::service
