#include "service/http_api.hpp"

#include <openssl/crypto.h>

#include <array>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <cstring>
#include <random>

#include "libcore/hex.hpp"
#include "service/log.hpp"
#include "service/problem.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// Request ids need to be unique, not secret: a per-thread generator, seeded once from the OS.
std::string new_request_id() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::array<std::uint8_t, 16> bytes;
  const std::array<std::uint64_t, 2> words{rng(), rng()};
  std::memcpy(bytes.data(), words.data(), bytes.size());
  return core::to_hex(bytes);
}

}  // namespace

http_api::http_api(const config& c, core::engine& engine, core::coordinator& coordinator,
                   core::fetch::fetcher& fetcher, metrics& m, fetch_metrics& fm,
                   std::vector<boost::asio::any_io_executor> io)
    : config_(c),
      engine_(engine),
      coordinator_(coordinator),
      fetcher_(fetcher),
      metrics_(m),
      fetch_metrics_(fm),
      io_(std::move(io)),
      limits_{c.max_retention,
              fetch_limits{c.fetch_timeout, c.fetch_default_body_bytes, c.fetch_max_body_bytes,
                           c.fetch_max_redirects, c.fetch_max_requests, c.fetch_max_concurrency}} {}

core::awaitable<void> http_api::in_two_halves(
    std::size_t n, const std::function<void(std::size_t, std::size_t)>& work) {
  constexpr std::size_t split_from = 1024;  // below this, the hops cost more than they save
  const auto mine = co_await net::this_coro::executor;
  const auto other =
      std::find_if(io_.begin(), io_.end(), [&](const auto& ex) { return ex != mine; });
  if (n < split_from || other == io_.end()) {
    work(0, n);
    co_return;
  }
  const std::size_t half = n / 2;
  // (named, not temporaries in the co_await: g++ 12 destroys those twice)
  auto first = [&]() -> core::awaitable<void> {
    work(0, half);
    co_return;
  };
  auto second = [&]() -> core::awaitable<void> {
    work(half, n);
    co_return;
  };
  auto both = net::experimental::make_parallel_group(net::co_spawn(mine, first, net::deferred),
                                                     net::co_spawn(*other, second, net::deferred));
  auto [order, first_error, second_error] =
      co_await std::move(both).async_wait(net::experimental::wait_for_all(), net::use_awaitable);
  if (first_error) std::rethrow_exception(first_error);
  if (second_error) std::rethrow_exception(second_error);
}

http_response json_response(unsigned status, const nlohmann::json& body) {
  http_response res;
  res.status = status;
  res.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return res;
}

bool wants_ndjson(const http_request& req) {
  return req.accept.find("application/x-ndjson") != std::string::npos;
}

http_response job_accepted(const core::submission& s) {
  http_response res;
  res.status = s.created ? 202 : 200;
  res.body = encode_job(s.job);
  res.headers.emplace_back("Location", "/v1/jobs/" + s.job.id.to_string());
  return res;
}

void require_json_body(const http_request& req) {
  std::string_view type = req.content_type;
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  if (!boost::algorithm::iequals(type, "application/json")) {
    throw request_error(415, "unsupported_media_type",
                        "the body must be application/json (got '" + req.content_type + "')");
  }
}

http_response http_api::open_websocket(const http_request& req) {
  if (!req.websocket_upgrade) {
    http_response res =
        problem_response(426, "upgrade_required", "GET /v1/ws needs a WebSocket upgrade request");
    res.headers.emplace_back("Upgrade", "websocket");
    return res;
  }
  if (readiness_.load() == readiness::draining) {
    throw request_error(503, "shutting_down", "the server is shutting down");
  }
  if (websockets_.fetch_add(1) >= config_.ws_max_connections) {
    websockets_.fetch_sub(1);
    throw request_error(429, "too_many_connections",
                        "more than " + std::to_string(config_.ws_max_connections) +
                            " WebSocket connections are open");
  }
  http_response res;
  res.status = 101;
  res.content_type.clear();
  return res;
}

bool http_api::authorized(const http_request& req) const {
  if (config_.api_tokens.empty()) return true;
  static constexpr std::string_view scheme = "Bearer ";
  std::string_view header = req.authorization;
  if (header.size() <= scheme.size() || !boost::algorithm::istarts_with(header, scheme))
    return false;
  std::string_view presented = header.substr(scheme.size());
  for (const auto& token : config_.api_tokens) {
    if (token.size() == presented.size() &&
        CRYPTO_memcmp(token.data(), presented.data(), token.size()) == 0) {
      return true;
    }
  }
  return false;
}

core::awaitable<http_response> http_api::handle(http_request req) {
  const auto started = core::steady_clock::now();
  if (!valid_request_id(req.request_id)) req.request_id = new_request_id();
  const routing r = find_route(req.method, req.target);
  // (No co_await inside a conditional expression: g++ 12 miscompiles it.)
  http_response res;
  if (r.matched && r.matched->waits && req.client_gone) {
    res = co_await respond_unless_client_gone(req, r);
  } else {
    res = co_await respond(req, r);
  }
  finish(req, r.matched ? r.match.route : std::string_view("unmatched"), res, started);
  co_return res;
}

core::awaitable<http_response> http_api::call(http_request req) {
  if (!valid_request_id(req.request_id)) req.request_id = new_request_id();
  const routing r = find_route(req.method, req.target);
  co_return co_await respond(req, r);
}

core::awaitable<http_response> http_api::respond(const http_request& req, const routing& r) {
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
    if (r.match.route.starts_with("/v1/") && !authorized(req)) {
      throw request_error(401, "unauthorized",
                          "a valid 'Authorization: Bearer <token>' is required");
    }
    co_return co_await dispatch(req, r.match, r.matched->target);
  } catch (...) {
    co_return problem_from(std::current_exception());
  }
}

// Runs the handler beside a watch on the client: if the client leaves first, the handler is
// cancelled (a gather is abandoned, a long-poll ends) and nothing is sent.
core::awaitable<http_response> http_api::respond_unless_client_gone(const http_request& req,
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

core::awaitable<http_response> http_api::dispatch(const http_request& req, const route_match& match,
                                                  endpoint target) {
  switch (target) {
    case endpoint::healthz:
      co_return healthz();
    case endpoint::readyz:
      co_return readyz();
    case endpoint::metrics:
      co_return metrics_text();
    case endpoint::openapi:
      co_return openapi();
    case endpoint::submit_job:
      co_return co_await submit_job(req);
    case endpoint::submit_batch:
      co_return co_await submit_batch(req);
    case endpoint::list_jobs:
      co_return co_await list_jobs(match);
    case endpoint::get_job:
      co_return co_await get_job(match);
    case endpoint::cancel_job:
      co_return co_await cancel_job(req, match);
    case endpoint::delete_job:
      co_return co_await delete_job(match);
    case endpoint::fetch:
      co_return co_await fetch(req, match);
    case endpoint::gather:
      co_return co_await gather(req, match);
    case endpoint::websocket:
      co_return open_websocket(req);
    default:  // the named primitives
      co_return co_await primitive(req, match, target);
  }
  throw std::logic_error("unrouted endpoint");
}

http_response http_api::reject(const http_request& partial, unsigned status,
                               const std::string& code, const std::string& detail) {
  http_request req = partial;
  if (!valid_request_id(req.request_id)) req.request_id = new_request_id();
  http_response res = problem_response(status, code, detail);
  finish(req, "unmatched", res, core::steady_clock::now());
  return res;
}

void http_api::finish(const http_request& req, std::string_view route, http_response& res,
                      core::steady_clock::time_point started) {
  res.headers.emplace_back("X-Request-Id", req.request_id);
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
