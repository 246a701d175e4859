// /v1/events: create, wait (GET, long-poll), delete, set, clear.
#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/primitive_codec.hpp"
#include "service/codec/query_reader.hpp"

namespace gatherd::service {

namespace {

enum class change { none, set, clear };

// PUT creates it (unchanged if it exists), set and clear change it: bodies without fields.
template <change c>
core::awaitable<http_response> update(api_context& api, const http_request& req,
                                      const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {});
  const auto state = co_await api.coordinator.set_event(name, c == change::set, c == change::clear);
  co_return json_response(200, event_json(state));
}

core::awaitable<http_response> wait(api_context& api, const http_request&,
                                    const route_match& match) {
  query_reader q(match.query);
  const std::string name = primitive_name(match);
  const auto wait = q.integer("wait_ms", 0, max_primitive_wait_ms).value_or(0);
  q.finish();
  const bool set = co_await api.coordinator.wait_event(name, core::millis(wait));
  co_return json_response(200, json{{"set", set}});
}

core::awaitable<http_response> remove(api_context& api, const http_request&,
                                      const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  co_await api.coordinator.remove_event(name);
  co_return no_content();
}

}  // namespace

void add_event_routes(route_table& t) {
  t.add("PUT", "/v1/events/{name}", update<change::none>);
  t.add("GET", "/v1/events/{name}", wait, waits::yes);
  t.add("DELETE", "/v1/events/{name}", remove);
  t.add("POST", "/v1/events/{name}/set", update<change::set>);
  t.add("POST", "/v1/events/{name}/clear", update<change::clear>);
}

}  // namespace gatherd::service
