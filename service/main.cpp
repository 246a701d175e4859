// gatherd: wires the engine, the HTTP API and the server, runs the I/O threads, and shuts
// down gracefully on SIGTERM/SIGINT (readiness 503, drain, stop accepting, let jobs finish
// within the grace, cancel the rest, flush logs, exit 0).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>

#include "libcore/engine.hpp"
#include "libcore/fetch/beast_http_client.hpp"
#include "libcore/fetch/fetcher.hpp"
#include "libcore/rate_limit/throttle.hpp"
#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/config.hpp"
#include "service/http/io_pool.hpp"
#include "service/http/pipeline.hpp"
#include "service/http/server.hpp"
#include "service/telemetry/fetch_metrics.hpp"
#include "service/telemetry/job_events.hpp"
#include "service/telemetry/log.hpp"
#include "service/telemetry/metrics.hpp"
#include "service/websocket/job_feed.hpp"
#include "service/websocket/protocol.hpp"

namespace net = boost::asio;
using namespace gatherd;
using namespace gatherd::service;

namespace {

net::awaitable<void> pause(std::chrono::milliseconds d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(net::as_tuple(net::use_awaitable));
}

net::awaitable<void> shutdown_on_signal(net::signal_set& signals, const config& c, api_context& api,
                                        server& srv, server* admin, core::engine& engine,
                                        core::coordinator& primitives, io_pool& io,
                                        core::shutdown_report& report) {
  auto [ec, signal] = co_await signals.async_wait(net::as_tuple(net::use_awaitable));
  const auto began = std::chrono::steady_clock::now();
  log::info("shutdown.begin")
      .add("signal", signal)
      .add("drain_ms", c.drain.count())
      .add("grace_ms", c.shutdown_grace.count());
  api.ready.store(readiness::draining);
  if (c.drain.count() > 0) co_await pause(c.drain);  // let load balancers see 503
  srv.stop_accepting();
  srv.drain();
  // The admin listener keeps answering probes (readyz 503) and scrapes until the very end.
  // Jobs finish or are cancelled; their cleanup is awaited up to --shutdown-cleanup-ms.
  report = co_await engine.shutdown(c.shutdown_grace);
  co_await primitives.shutdown();              // waiters answer, the lease sweeper ends
  // Requests in flight (long-polls included) end now that every job is final; bound the wait.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (srv.open_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    co_await pause(std::chrono::milliseconds(10));
  }
  srv.close_all();
  while (srv.open_connections() > 0) co_await pause(std::chrono::milliseconds(10));
  if (admin) {
    admin->stop_accepting();
    admin->drain();
    admin->close_all();
    while (admin->open_connections() > 0) co_await pause(std::chrono::milliseconds(10));
  }
  log::info("shutdown.done")
      .add("duration_ms",
           std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began)
               .count())
      .add("cleanups_cut", report.cleanups_cut)
      .add("jobs_left", report.jobs_left);
  io.stop();
}

core::fetch::http_client_config client_config(const config& c) {
  core::fetch::http_client_config cc;
  cc.max_connections = c.fetch_max_connections;
  cc.max_connections_per_origin = c.fetch_max_connections_per_host;
  cc.idle_timeout = c.fetch_idle_timeout;
  cc.connect_timeout = c.fetch_connect_timeout;
  cc.egress = {c.allow_private_fetch, c.fetch_allow_hosts};
  cc.ca_file = c.fetch_ca_file;
  cc.user_agent = "gatherd/" GATHERD_VERSION;
  return cc;
}

core::engine_config engine_config(const config& c) {
  core::engine_config e;
  e.max_running = c.max_running;
  e.max_queued = c.max_queued;
  e.max_retained = c.max_retained_jobs;
  e.max_job_bytes = c.jobs_max_bytes;
  e.default_retention = c.default_retention;
  e.compute_threads = c.compute_threads;
  e.shutdown_cleanup_limit = c.shutdown_cleanup;
  return e;
}

core::coordinator_config coordinator_config(const config& c) {
  core::coordinator_config p;
  p.max_primitives = c.max_primitives;
  p.max_waiters = c.max_waiters;
  p.idle_timeout = c.primitive_idle;
  p.queue_max_bytes = c.queue_max_bytes;
  p.queues_max_bytes = c.queues_max_bytes;
  return p;
}

core::fetch::fetch_settings fetch_settings(const config& c) {
  core::fetch::fetch_settings s;
  s.host_rate = c.fetch_host_rate;
  for (const auto& [host, rate] : c.fetch_host_rates) s.host_rates.emplace(host, rate);
  return s;
}

// The limits that alerts and dashboards compare usage with.
void export_limits(metrics& m, const config& c) {
  const std::pair<const char*, std::size_t> limits[] = {
      {"max_running", c.max_running},
      {"max_queued", c.max_queued},
      {"max_retained_jobs", c.max_retained_jobs},
      {"max_connections", c.max_connections},
      {"max_primitives", c.max_primitives},
      {"queues_max_bytes", c.queues_max_bytes},
      {"jobs_max_bytes", c.jobs_max_bytes},
      {"ws_max_connections", c.ws_max_connections},
      {"fetch_max_connections", c.fetch_max_connections},
      {"fetch_max_connections_per_host", c.fetch_max_connections_per_host},
  };
  for (const auto& [name, value] : limits) m.set_limit(name, static_cast<double>(value));
}

}  // namespace

int main(int argc, char* argv[]) {
  const command cmd = parse_command_line(argc, argv);
  if (cmd.what != command::action::run) {
    (cmd.what == command::action::exit_ok ? std::cout : std::cerr) << cmd.output;
    return cmd.what == command::action::exit_ok ? 0 : 2;
  }
  const config& c = cmd.settings;
  log::init(c);
  {
    io_pool io(c.threads);
    metrics meter;
    export_limits(meter, c);
    fetch_metrics fetch_meter(meter.registry());
    auto http_client =
        core::fetch::make_beast_http_client(io.main().get_executor(), client_config(c));
    core::throttle host_limits(io.main().get_executor());
    core::fetch::fetcher fetcher(*http_client, host_limits, fetch_settings(c), io.executors(),
                                 &fetch_meter);
    job_feed feed;
    job_events events(meter, feed);
    core::engine engine(io.main().get_executor(), engine_config(c), &events, &fetcher);
    core::coordinator primitives(io.main().get_executor(), coordinator_config(c));
    meter.on_scrape([&engine, &primitives, &fetch_meter, &http_client](metrics& m) {
      m.set_jobs(engine.queued(), engine.running(), engine.retained());
      m.set_job_bytes(engine.job_bytes());
      fetch_meter.set_client(http_client->stats());
      m.set_primitives(primitives.stats());
      m.set_log_dropped(log::dropped());
    });
    api_context api(c, engine, primitives, fetcher, meter, fetch_meter, io.executors());
    const route_table routes = api_routes();
    pipeline requests(routes, api, meter);
    ws_services websockets{c, api, feed, meter};
    server srv(io, c, requests, meter, websockets);
    const route_table probe_routes = admin_routes();
    pipeline probes(probe_routes, api, meter);
    std::optional<server> admin;
    if (c.admin_port) admin.emplace(io, c, probes, meter, websockets);
    try {
      if (admin) {  // announced first: whoever waits for "listening" finds both
        const auto bound = admin->listen(c.host, *c.admin_port);
        log::announce("admin_listening", "address", bound.address().to_string(), "port",
                      bound.port());
      }
      const auto bound = srv.listen(c.host, c.port);
      log::announce("listening", "address", bound.address().to_string(), "port", bound.port());
    } catch (const std::exception& e) {
      log::error("listen_failed")
          .add("host", c.host)
          .add("port", static_cast<int>(c.port))
          .add("error", e.what());
      log::shutdown();
      return 1;
    }
    net::signal_set signals(io.main(), SIGINT, SIGTERM);
    core::shutdown_report shutdown;
    net::co_spawn(io.main(),
                  shutdown_on_signal(signals, c, api, srv, admin ? &*admin : nullptr, engine,
                                     primitives, io, shutdown),
                  net::detached);
    engine.start();
    primitives.start();
    srv.start();
    if (admin) admin->start();
    api.ready.store(readiness::ready);
    log::info("started")
        .add("threads", c.threads)
        .add("compute_threads", c.compute_threads)
        .add("max_running", c.max_running)
        .add("max_queued", c.max_queued)
        .add("auth", !c.api_tokens.empty())
        .add("allow_private_fetch", c.allow_private_fetch);

    io.run();
    if (shutdown.jobs_left > 0) {
      // Their coroutine frames reference the engine: destroying the io_contexts after it would
      // touch freed memory. Everything worth keeping (the logs) is flushed; end here.
      log::shutdown();
      std::_Exit(0);
    }
  }
  log::shutdown();
  return 0;
}
