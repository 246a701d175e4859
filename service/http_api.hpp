// The HTTP API over the engine: one call per request, from a plain request to a plain response.
// handle() is the pipeline every request goes through (request id, routing, auth, errors as
// problem+json, metrics, the access log line); the handlers themselves stay thin:
// parse -> call the engine -> encode.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <vector>

#include "libcore/engine.hpp"
#include "libcore/fetch/fetcher.hpp"
#include "libcore/primitives/coordinator.hpp"
#include "service/config.hpp"
#include "service/fetch_metrics.hpp"
#include "service/http_message.hpp"
#include "service/job_codec.hpp"
#include "service/metrics.hpp"
#include "service/router.hpp"

namespace gatherd::service {

enum class readiness { starting, ready, draining };

struct gather_stream;  // handlers/gather.cpp

class http_api {
 public:
  // `io`: one executor per I/O thread, the engine's first. Large requests use the others: a
  // large gather's answer is written on the last while its jobs finish, and its entries are
  // read on two threads.
  http_api(const config& c, core::engine& engine, core::coordinator& coordinator,
           core::fetch::fetcher& fetcher, metrics& m, fetch_metrics& fm,
           std::vector<boost::asio::any_io_executor> io);

  // Never throws: every failure becomes a problem response.
  core::awaitable<http_response> handle(http_request request);

  // The same answer as handle() without the access log and HTTP metrics: WebSocket
  // operations answer exactly like their REST twins but are counted as WebSocket messages.
  core::awaitable<http_response> call(http_request request);

  // A 101 answer to GET /v1/ws reserves a WebSocket slot; the session gives it back here.
  void websocket_closed() { websockets_.fetch_sub(1); }

  // For errors found before a request is complete (limits, syntax): counted and logged too.
  http_response reject(const http_request& partial, unsigned status, const std::string& code,
                       const std::string& detail);

  void set_readiness(readiness r) { readiness_.store(r); }
  readiness current_readiness() const { return readiness_.load(); }

 private:
  core::awaitable<http_response> respond(const http_request& req, const routing& r);
  core::awaitable<http_response> respond_unless_client_gone(const http_request& req,
                                                            const routing& r);
  core::awaitable<http_response> dispatch(const http_request& req, const route_match& match,
                                          endpoint target);
  bool authorized(const http_request& req) const;
  // Runs work(begin, end) over [0, n): for large n, half of it on another I/O thread at the
  // same time. An exception from the first half is rethrown before one from the second.
  core::awaitable<void> in_two_halves(std::size_t n,
                                      const std::function<void(std::size_t, std::size_t)>& work);
  void finish(const http_request& req, std::string_view route, http_response& res,
              core::steady_clock::time_point started);

  // handlers/operations.cpp
  http_response healthz() const;
  http_response readyz() const;
  http_response metrics_text();
  http_response openapi() const;
  http_response open_websocket(const http_request& req);
  // handlers/jobs.cpp
  core::awaitable<http_response> submit_job(const http_request& req);
  core::awaitable<http_response> submit_batch(const http_request& req);
  core::awaitable<http_response> list_jobs(const route_match& match);
  core::awaitable<http_response> get_job(const route_match& match);
  core::awaitable<http_response> cancel_job(const http_request& req, const route_match& match);
  core::awaitable<http_response> delete_job(const route_match& match);
  // handlers/gather.cpp
  core::awaitable<http_response> gather(const http_request& req, const route_match& match);
  core::awaitable<void> stream_gather(std::vector<core::gather_entry> entries,
                                      core::gather_options options,
                                      std::shared_ptr<gather_stream> stream,
                                      std::string request_id);
  void record_gather(const core::gather_result& result, std::size_t count,
                     const std::string& request_id);
  // handlers/fetch.cpp
  core::awaitable<http_response> fetch(const http_request& req, const route_match& match);
  void record_fetch_batch(const core::fetch::batch_summary& summary, std::size_t count,
                          fetch_metrics::batch_mode mode, const std::string& request_id);
  // handlers/primitives.cpp
  core::awaitable<http_response> primitive(const http_request& req, const route_match& match,
                                           endpoint target);
  core::awaitable<http_response> primitive_other(const http_request& req, const route_match& match,
                                                 endpoint target);

  const config& config_;
  core::engine& engine_;
  core::coordinator& coordinator_;
  core::fetch::fetcher& fetcher_;
  metrics& metrics_;
  fetch_metrics& fetch_metrics_;
  std::vector<boost::asio::any_io_executor> io_;
  spec_limits limits_;
  std::atomic<readiness> readiness_{readiness::starting};
  std::atomic<std::size_t> websockets_{0};
};

// Helpers shared by the handlers.
http_response json_response(unsigned status, const nlohmann::json& body);
void require_json_body(const http_request& req);
// Accept asks for application/x-ndjson (as_completed streaming).
bool wants_ndjson(const http_request& req);
// 202 with the job and its Location (200 for an idempotent replay).
http_response job_accepted(const core::submission& s);

}  // namespace gatherd::service
