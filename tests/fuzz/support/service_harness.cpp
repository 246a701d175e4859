#include "tests/fuzz/support/service_harness.hpp"

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <chrono>

#include "libcore/engine.hpp"
#include "libcore/fetch/egress_guard.hpp"
#include "libcore/fetch/fetcher.hpp"
#include "libcore/fetch/http_syntax.hpp"
#include "libcore/fetch/url.hpp"
#include "libcore/primitives/coordinator.hpp"
#include "libcore/rate_limit/throttle.hpp"
#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/codec/json_reader.hpp"
#include "service/http/pipeline.hpp"
#include "service/http/problem.hpp"
#include "service/telemetry/fetch_metrics.hpp"
#include "service/telemetry/job_events.hpp"
#include "service/telemetry/log.hpp"
#include "service/telemetry/metrics.hpp"
#include "service/websocket/job_feed.hpp"
#include "service/websocket/protocol.hpp"
#include "tests/fuzz/support/check.hpp"

namespace gatherd::fuzz {

namespace net = boost::asio;
namespace fetch = core::fetch;
using namespace std::chrono_literals;

namespace {

// Process-wide, never destroyed: Prometheus families are costly to build for every input, and
// their counters only ever grow.
service::metrics& shared_metrics() {
  static auto* m = new service::metrics();
  return *m;
}
// Process-wide too: the metrics' per-thread label caches keep views of the route patterns.
const service::route_table& shared_routes() {
  static const auto* routes = new service::route_table(service::api_routes());
  return *routes;
}
service::fetch_metrics& shared_fetch_metrics() {
  static auto* m = new service::fetch_metrics(shared_metrics().registry());
  return *m;
}

std::string_view until(std::string_view s, char end) {
  return s.substr(0, s.find(end));
}

// The outbound client, canned: it validates like the real one (URL, egress guard on the address
// a name "resolves" to) and answers from the URL, so fetch batches, retries and Retry-After
// all run without DNS or network:
//   /status/NNN[?retry-after=V]  answers NNN (with Retry-After: V)
//   /error/TYPE                   fails with that fetch error type
//   anything else                 200, the URL as the body
// A request that reaches it must be valid already: the codecs refuse (400) what the real client
// would refuse before sending.
class canned_client final : public fetch::http_client {
 public:
  core::awaitable<fetch::http_response> send(fetch::http_request request) override {
    co_await net::post(co_await net::this_coro::executor, net::use_awaitable);  // asynchronous
    const fetch::fetch_url url = fetch::parse_fetch_url(request.url);
    require(fetch::is_token(request.method), "an invalid method reached the client",
            request.method);
    for (const auto& [name, value] : request.headers) {
      require(fetch::is_token(name) && fetch::is_field_value(value),
              "an invalid header reached the client", name + ": " + value);
    }
    require(fetch::is_origin_form(url.path), "request target is not origin-form", url.path);
    const auto address = url.literal               ? *url.literal
                         : url.host == "localhost" ? net::ip::make_address("127.0.0.1")
                                                   : net::ip::make_address("93.184.216.34");
    const net::ip::tcp::endpoint resolved(address, url.port);
    if (fetch::check_egress({}, url.host, std::span(&resolved, 1)).allowed.empty()) {
      ++stats_.egress_denied;
      throw fetch::fetch_error("fetch_denied", fetch::egress_denied_message(url.host));
    }
    fetch::http_response res;
    res.url = request.url;
    std::string_view path = url.path;
    if (path.starts_with("/error/")) {
      const std::string type(until(path.substr(7), '?'));
      for (const char* known : {"dns", "connect", "tls", "timeout", "protocol", "redirects"}) {
        if (type == known) throw fetch::fetch_error(type, "canned " + type);
      }
    }
    res.status = 200;
    if (path.starts_with("/status/") && path.size() >= 11) {
      const auto status = static_cast<unsigned>(std::atoi(std::string(path.substr(8, 3)).c_str()));
      if (status >= 100 && status <= 599) res.status = status;
    }
    if (const auto at = path.find("retry-after="); at != std::string_view::npos) {
      res.headers.emplace_back("Retry-After", std::string(until(path.substr(at + 12), '&')));
    }
    res.body = request.url;
    if (res.body.size() > request.max_body_bytes) {
      res.body.resize(request.max_body_bytes);
      res.truncated = true;
    }
    co_return res;
  }
  const fetch::http_client_stats& stats() const override { return stats_; }

 private:
  fetch::http_client_stats stats_;
};

// As service/main.cpp derives them from the flags.
core::engine_config engine_config(const service::config& c) {
  core::engine_config e;
  e.max_running = c.max_running;
  e.max_queued = c.max_queued;
  e.max_retained = c.max_retained_jobs;
  e.default_retention = c.default_retention;
  e.compute_threads = c.compute_threads;
  return e;
}

core::coordinator_config coordinator_config(const service::config& c) {
  core::coordinator_config p;
  p.max_primitives = c.max_primitives;
  p.max_waiters = c.max_waiters;
  return p;
}

// Collects a streamed body; the client never stops reading on its own.
class collecting_writer : public service::body_writer {
 public:
  core::awaitable<bool> write(std::string piece) override {
    pieces.push_back(std::move(piece));
    co_return true;
  }
  std::vector<std::string> pieces;
};

bool long_cleanup_in(const nlohmann::json& v) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it.key() == "cleanup_ms" && it->is_number() && it->get<double>() > 20) return true;
      if (long_cleanup_in(*it)) return true;
    }
  } else if (v.is_array()) {
    for (const auto& item : v) {
      if (long_cleanup_in(item)) return true;
    }
  }
  return false;
}

}  // namespace

bool asks_long_cleanup(std::string_view body) {
  try {
    return long_cleanup_in(service::parse_json_body(body));
  } catch (const service::request_error&) {
    return false;
  }
}

struct service_harness::parts {
  explicit parts(net::io_context& io)
      : host_limits(io.get_executor()),
        fetcher(client, host_limits, {}, {io.get_executor()}, &shared_fetch_metrics()),
        events(shared_metrics(), feed),
        engine(io.get_executor(), engine_config(settings), &events, &fetcher),
        coordinator(io.get_executor(), coordinator_config(settings)),
        api(settings, engine, coordinator, fetcher, shared_metrics(), shared_fetch_metrics(),
            {io.get_executor()}),
        requests(shared_routes(), api, shared_metrics()),
        websockets{settings, api, feed, shared_metrics()} {}

  const service::config settings = service_harness::settings();
  canned_client client;
  core::throttle host_limits;
  fetch::fetcher fetcher;
  service::job_feed feed;
  service::job_events events;
  core::engine engine;
  core::coordinator coordinator;
  service::api_context api;
  service::pipeline requests;
  service::ws_services websockets;
};

service::config service_harness::settings() {
  service::config c;
  c.threads = 1;
  c.compute_threads = 1;
  return c;
}

service_harness::service_harness() : parts_(std::make_unique<parts>(io_)) {
  auto& p = *parts_;
  shared_metrics().on_scrape([&p](service::metrics& m) {
    m.set_jobs(p.engine.queued(), p.engine.running(), p.engine.retained());
    shared_fetch_metrics().set_client(p.client.stats());
    m.set_primitives(p.coordinator.stats());
    m.set_log_dropped(service::log::dropped());
  });
  p.engine.start();
  p.coordinator.start();
  p.api.ready.store(service::readiness::ready);
}

service_harness::~service_harness() {
  // As main.cpp on SIGTERM: jobs are cancelled (no grace) and their cleanup awaited, then every
  // primitive's waiters are answered. Whatever that wakes runs before anything is destroyed.
  run([](parts& p) -> core::awaitable<void> {
    co_await p.engine.shutdown(0ms);
    co_await p.coordinator.shutdown();
  }(*parts_));
  io_.restart();
  io_.poll();
  shared_metrics().on_scrape({});
  parts_.reset();
}

void service_harness::run(core::awaitable<void> work) {
  bool done = false;
  std::exception_ptr error;
  net::co_spawn(io_, std::move(work), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  drive(done);
  if (error) std::rethrow_exception(error);
}

// Runs the event loop until `done`. Out of work before that means nothing can ever complete
// the operation (in the server it would hang forever); too long means a livelock. Both are
// reported as findings, below libFuzzer's own -timeout so the message says which.
void service_harness::drive(const bool& done) {
  const auto limit = std::chrono::steady_clock::now() + 20s;
  while (!done) {
    if (io_.stopped()) io_.restart();
    const std::size_t ran = io_.run_one_for(100ms);
    if (done) break;
    require(ran > 0 || !io_.stopped(), "an operation can never complete (no work left)");
    require(std::chrono::steady_clock::now() < limit, "an operation ran for more than 20 s");
  }
}

core::awaitable<void> service_harness::patience(int turns) {
  for (int i = 0; i < turns; ++i) co_await net::post(io_.get_executor(), net::use_awaitable);
}

core::awaitable<service::http_response> service_harness::request(service::http_request req) {
  req.client_gone = [this] { return patience(); };
  return parts_->requests.handle(std::move(req));
}

service::http_response service_harness::handle(service::http_request req) {
  return run(request(std::move(req)));
}

std::vector<std::string> service_harness::drain(const service::http_response& res) {
  if (!res.stream) return {};
  collecting_writer writer;
  // As the server writes a stream: beside a watch on the client, which leaves after a while.
  run([](const service::http_response& res, collecting_writer& writer,
         service_harness& h) -> core::awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    co_await net::experimental::make_parallel_group(
        net::co_spawn(ex, res.stream(writer), net::deferred),
        net::co_spawn(ex, h.patience(256), net::deferred))
        .async_wait(net::experimental::wait_for_one(), net::use_awaitable);
  }(res, writer, *this));
  return std::move(writer.pieces);
}

core::executor service_harness::executor() {
  return io_.get_executor();
}
service::api_context& service_harness::api() {
  return parts_->api;
}
service::ws_services& service_harness::websockets() {
  return parts_->websockets;
}
service::pipeline& service_harness::requests() {
  return parts_->requests;
}

}  // namespace gatherd::fuzz
