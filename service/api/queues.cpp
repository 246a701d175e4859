// /v1/queues: create, read, delete, put (waits for room), get (waits for items, leases them),
// done (acknowledges receipts), join (waits until every item is done).
#include <boost/asio/detached.hpp>
#include <limits>
#include <optional>

#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/primitive_codec.hpp"
#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

constexpr std::size_t max_items_per_call = 1000;

core::awaitable<http_response> put(api_context& api, const http_request& req,
                                   const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"maxsize", "max_bytes"});
  const auto maxsize = r.integer("maxsize", 1, 1'000'000);
  if (!maxsize) throw invalid_request("field 'maxsize' (1 to 1000000) is required");
  // At most the server's --queue-max-bytes (also the default): a 400 above, never clamped.
  const auto limit = static_cast<std::int64_t>(std::min<std::size_t>(
      api.settings.queue_max_bytes, std::numeric_limits<std::int64_t>::max()));
  std::optional<std::size_t> max_bytes;
  if (auto b = r.integer("max_bytes", 1, limit)) max_bytes = static_cast<std::size_t>(*b);
  const auto state =
      co_await api.coordinator.put_queue(name, static_cast<std::size_t>(*maxsize), max_bytes);
  co_return json_response(200, queue_json(state));
}

core::awaitable<http_response> get(api_context& api, const http_request&,
                                   const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  co_return json_response(200, queue_json(co_await api.coordinator.get_queue(name)));
}

core::awaitable<http_response> remove(api_context& api, const http_request&,
                                      const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  co_await api.coordinator.remove_queue(name);
  co_return no_content();
}

core::awaitable<http_response> put_items(api_context& api, const http_request& req,
                                         const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"items", "wait_ms"});
  const json* items = r.raw("items");
  if (!items || !items->is_array() || items->empty() || items->size() > max_items_per_call) {
    throw invalid_request("field 'items' must be an array of 1 to " +
                          std::to_string(max_items_per_call) + " JSON values");
  }
  const auto wait = read_wait(r);
  std::vector<json> values(items->begin(), items->end());
  const std::size_t n = values.size();
  co_await api.coordinator.put_items(name, std::move(values), wait);
  co_return json_response(200, json{{"put", n}});
}

core::awaitable<http_response> get_items(api_context& api, const http_request& req,
                                         const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"max_items", "wait_ms", "lease_ms"});
  const auto max_items = r.integer("max_items", 1, max_items_per_call).value_or(1);
  const auto wait = read_wait(r);
  const auto lease = read_lease(r, "lease_ms");
  auto& coord = api.coordinator;
  auto got = co_await coord.get_items(name, static_cast<std::size_t>(max_items), wait, lease);
  json out = json::array();
  std::vector<std::string> receipts;
  for (auto& d : got) {
    receipts.push_back(d.receipt);
    out.push_back(json{{"receipt", d.receipt}, {"value", std::move(d.value)}});
  }
  http_response res = json_response(200, json{{"items", std::move(out)}});
  if (!receipts.empty()) {  // not delivered: the items go back at once, not at lease end
    res.undelivered = [&coord, name, receipts = std::move(receipts)] {
      net::co_spawn(coord.get_executor(), coord.return_items(name, receipts), net::detached);
    };
  }
  co_return res;
}

core::awaitable<http_response> done(api_context& api, const http_request& req,
                                    const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"receipts"});
  const json* receipts = r.raw("receipts");
  if (!receipts || !receipts->is_array() || receipts->empty() ||
      receipts->size() > max_items_per_call) {
    throw invalid_request("field 'receipts' must be an array of 1 to " +
                          std::to_string(max_items_per_call) + " receipts");
  }
  std::vector<std::string> ids;
  for (const auto& id : *receipts) {
    if (!id.is_string()) throw invalid_request("field 'receipts' must hold strings");
    ids.push_back(id.get<std::string>());
  }
  const std::size_t n = ids.size();
  auto unknown = co_await api.coordinator.done_items(name, std::move(ids));
  co_return json_response(200, json{{"done", n - unknown.size()}, {"unknown", unknown}});
}

core::awaitable<http_response> join(api_context& api, const http_request&,
                                    const route_match& match) {
  query_reader q(match.query);
  const std::string name = primitive_name(match);
  const auto wait = q.integer("wait_ms", 0, max_primitive_wait_ms).value_or(0);
  q.finish();
  const auto unfinished = co_await api.coordinator.join_queue(name, core::millis(wait));
  co_return json_response(200, json{{"unfinished", unfinished}});
}

}  // namespace

void add_queue_routes(route_table& t) {
  t.add("PUT", "/v1/queues/{name}", put);
  t.add("GET", "/v1/queues/{name}", get);
  t.add("DELETE", "/v1/queues/{name}", remove);
  t.add("POST", "/v1/queues/{name}/put", put_items, waits::yes);
  t.add("POST", "/v1/queues/{name}/get", get_items, waits::yes);
  t.add("POST", "/v1/queues/{name}/done", done);
  t.add("GET", "/v1/queues/{name}/join", join, waits::yes);
}

}  // namespace gatherd::service
