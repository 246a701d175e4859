#include "service/http/pipeline.hpp"

#include <array>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <cstring>
#include <random>

#include "libcore/hex.hpp"
#include "service/api/context.hpp"
#include "service/http/auth.hpp"
#include "service/http/problem.hpp"
#include "service/telemetry/log.hpp"
#include "service/telemetry/metrics.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

}  // namespace

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
}

// Request ids need to be unique, not secret: a per-thread generator, seeded once from the OS.
std::string new_request_id() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::array<std::uint8_t, 16> bytes;
  const std::array<std::uint64_t, 2> words{rng(), rng()};
  std::memcpy(bytes.data(), words.data(), bytes.size());
  return core::to_hex(bytes);
}

pipeline::pipeline(const route_table& routes, api_context& api, metrics& m)
    : routes_(routes), api_(api), metrics_(m) {}

core::awaitable<http_response> pipeline::handle(http_request req) {
  const auto started = core::steady_clock::now();
  if (!valid_request_id(req.request_id)) req.request_id = new_request_id();
  const routing r = routes_.find(req.method, req.target);
  // (No co_await inside a conditional expression: g++ 12 miscompiles it.)
  http_response res;
  if (r.matched && r.matched->may_wait == waits::yes && req.client_gone) {
    res = co_await respond_unless_client_gone(req, r);
  } else {
    res = co_await respond(req, r);
  }
  finish(req, r.matched ? r.match.route : std::string_view("unmatched"), res, started);
  co_return res;
}

core::awaitable<http_response> pipeline::respond(const http_request& req, const routing& r) {
  try {
    if (r.bad_target) throw invalid_request("the request target is not a valid path");
    if (!r.matched && !r.allow.empty()) {
      http_response res =
          problem_response(405, "method_not_allowed",
                           req.method + " is not allowed on " + std::string(path_of(req.target)));
      res.headers.emplace_back("Allow", r.allow);
      co_return res;
    }
    if (!r.matched) {
      throw request_error(404, "not_found", "no route for " + std::string(path_of(req.target)));
    }
    if (r.match.route.starts_with("/v1/") &&
        !authorized(api_.settings.api_tokens, req.authorization)) {
      throw request_error(401, "unauthorized",
                          "a valid 'Authorization: Bearer <token>' is required");
    }
    co_return co_await r.matched->handle(api_, req, r.match);
  } catch (...) {
    co_return problem_from(std::current_exception());
  }
}

// Runs the handler beside a watch on the client: if the client leaves first, the handler is
// cancelled (a gather is abandoned, a long-poll ends) and nothing is sent.
core::awaitable<http_response> pipeline::respond_unless_client_gone(const http_request& req,
                                                                    const routing& r) {
  const auto ex = co_await net::this_coro::executor;
  auto [order, error, res, gone_error] =
      co_await net::experimental::make_parallel_group(
          net::co_spawn(ex, respond(req, r), net::deferred),
          net::co_spawn(ex, req.client_gone(), net::deferred))
          .async_wait(net::experimental::wait_for_one(), net::use_awaitable);
  if (order[0] == 1) {
    co_return problem_response(status_client_closed, "client_closed",
                               "the client went away before the answer");
  }
  if (error) co_return problem_from(error);
  co_return std::move(res);
}

http_response pipeline::reject(const http_request& partial, unsigned status,
                               const std::string& code, const std::string& detail) {
  http_request req = partial;
  if (!valid_request_id(req.request_id)) req.request_id = new_request_id();
  http_response res = problem_response(status, code, detail);
  finish(req, "unmatched", res, core::steady_clock::now());
  return res;
}

void pipeline::finish(const http_request& req, std::string_view route, http_response& res,
                      core::steady_clock::time_point started) {
  if (res.retry_after) {
    res.headers.emplace_back("Retry-After",
                             retry_after_seconds(*res.retry_after, api_.settings.retry_after_max));
  }
  res.headers.emplace_back("X-Request-Id", req.request_id);  // last: the WebSocket upgrade reads it
  const double seconds = std::chrono::duration<double>(core::steady_clock::now() - started).count();
  metrics_.request_done(route, req.method, res.status, seconds);
  log::event(res.status >= 500 ? log::level::error : log::level::info, "http.request")
      .add("request_id", req.request_id)
      .add("method", req.method)
      .add("route", route)
      .add("status", res.status)
      .add("duration_ms", seconds * 1000)
      .add("remote", req.remote);
}

}  // namespace gatherd::service
