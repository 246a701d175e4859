// /v1/barriers: create, read, delete, wait (until `parties` have arrived).
#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/primitive_codec.hpp"
#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

core::awaitable<http_response> put(api_context& api, const http_request& req,
                                   const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"parties"});
  const auto parties = r.integer("parties", 1, 10000);
  if (!parties) throw invalid_request("field 'parties' (1 to 10000) is required");
  const auto state = co_await api.coordinator.put_barrier(name, static_cast<std::size_t>(*parties));
  co_return json_response(200, barrier_json(state));
}

core::awaitable<http_response> get(api_context& api, const http_request&,
                                   const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  co_return json_response(200, barrier_json(co_await api.coordinator.get_barrier(name)));
}

core::awaitable<http_response> remove(api_context& api, const http_request&,
                                      const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  co_await api.coordinator.remove_barrier(name);
  co_return no_content();
}

core::awaitable<http_response> wait(api_context& api, const http_request& req,
                                    const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"wait_ms"});
  const auto pass = co_await api.coordinator.wait_barrier(name, read_wait(r));
  co_return json_response(200, json{{"generation", pass.generation}, {"arrival", pass.arrival}});
}

}  // namespace

void add_barrier_routes(route_table& t) {
  t.add("PUT", "/v1/barriers/{name}", put);
  t.add("GET", "/v1/barriers/{name}", get);
  t.add("DELETE", "/v1/barriers/{name}", remove);
  t.add("POST", "/v1/barriers/{name}/wait", wait, waits::yes);
}

}  // namespace gatherd::service
