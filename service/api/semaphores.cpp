// /v1/semaphores and /v1/locks (a lock is a semaphore of one permit, created on first use, that
// may be reentrant): create, read, delete, acquire (waits), release, keepalive.
#include <boost/asio/detached.hpp>

#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/primitive_codec.hpp"
#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

enum class kind : bool { semaphore, lock };

core::awaitable<http_response> put_semaphore(api_context& api, const http_request& req,
                                             const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"permits"});
  const auto permits = r.integer("permits", 1, 1'000'000);
  if (!permits) throw invalid_request("field 'permits' (1 to 1000000) is required");
  const auto state =
      co_await api.coordinator.put_semaphore(name, static_cast<std::size_t>(*permits));
  co_return json_response(200, semaphore_json(state));
}

core::awaitable<http_response> put_lock(api_context& api, const http_request& req,
                                        const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {});
  co_return json_response(200, semaphore_json(co_await api.coordinator.put_lock(name)));
}

template <kind k>
core::awaitable<http_response> get(api_context& api, const http_request&,
                                   const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const auto state = co_await api.coordinator.get_semaphore(name, k == kind::lock);
  co_return json_response(200, semaphore_json(state));
}

template <kind k>
core::awaitable<http_response> remove(api_context& api, const http_request&,
                                      const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  co_await api.coordinator.remove_semaphore(name, k == kind::lock);
  co_return no_content();
}

template <kind k>
core::awaitable<http_response> acquire(api_context& api, const http_request& req,
                                       const route_match& match) {
  constexpr bool lock = k == kind::lock;
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"holder", "wait_ms", "ttl_ms", "reentrant"});
  core::acquire_request request;
  auto holder = r.string("holder", 256);
  if (!holder || holder->empty()) {
    throw invalid_request("field 'holder' (1 to 256 characters) is required");
  }
  request.holder = std::move(*holder);
  request.ttl = read_lease(r, "ttl_ms");
  if (lock) {
    request.reentrant = r.boolean("reentrant").value_or(false);
  } else if (r.has("reentrant")) {
    throw invalid_request("unknown field 'reentrant' (locks only)");
  }
  const auto wait = read_wait(r);
  auto& coord = api.coordinator;
  const auto started = core::steady_clock::now();
  const core::permit p = co_await coord.acquire(name, lock, std::move(request), wait);
  api.meter.primitive_acquired(
      std::chrono::duration<double>(core::steady_clock::now() - started).count());
  http_response res = json_response(200, permit_json(p));
  // Not delivered (the client left): the permit goes to the next in line.
  // (`k == kind::lock`, not `lock`: clang 14 wants that constexpr local captured here.)
  res.undelivered = [&coord, name, id = p.id] {
    net::co_spawn(coord.get_executor(), coord.release(name, k == kind::lock, id), net::detached);
  };
  co_return res;
}

template <kind k>
core::awaitable<http_response> release(api_context& api, const http_request& req,
                                       const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"permit_id"});
  auto id = r.string("permit_id", 128);
  if (!id) throw invalid_request("field 'permit_id' is required");
  const auto left = co_await api.coordinator.release(name, k == kind::lock, *id);
  co_return json_response(200, json{{"permit_id", *id}, {"count", left}});
}

template <kind k>
core::awaitable<http_response> keepalive(api_context& api, const http_request& req,
                                         const route_match& match) {
  const std::string name = primitive_name(match);
  query_reader(match.query).finish();
  const json body = optional_body(req);
  object_reader r(body, "", {"permit_id", "ttl_ms"});
  auto id = r.string("permit_id", 128);
  if (!id) throw invalid_request("field 'permit_id' is required");
  const auto ttl = read_lease(r, "ttl_ms");
  const auto p = co_await api.coordinator.keepalive(name, k == kind::lock, *id, ttl);
  co_return json_response(200, permit_json(p));
}

}  // namespace

void add_semaphore_routes(route_table& t) {
  t.add("PUT", "/v1/semaphores/{name}", put_semaphore);
  t.add("GET", "/v1/semaphores/{name}", get<kind::semaphore>);
  t.add("DELETE", "/v1/semaphores/{name}", remove<kind::semaphore>);
  t.add("POST", "/v1/semaphores/{name}/acquire", acquire<kind::semaphore>, waits::yes);
  t.add("POST", "/v1/semaphores/{name}/release", release<kind::semaphore>);
  t.add("POST", "/v1/semaphores/{name}/keepalive", keepalive<kind::semaphore>);
  t.add("PUT", "/v1/locks/{name}", put_lock);
  t.add("GET", "/v1/locks/{name}", get<kind::lock>);
  t.add("DELETE", "/v1/locks/{name}", remove<kind::lock>);
  t.add("POST", "/v1/locks/{name}/acquire", acquire<kind::lock>, waits::yes);
  t.add("POST", "/v1/locks/{name}/release", release<kind::lock>);
  t.add("POST", "/v1/locks/{name}/keepalive", keepalive<kind::lock>);
}

}  // namespace gatherd::service
