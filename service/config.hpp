// Every setting of the process, from flags and GATHERD_* environment variables.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "libcore/clock.hpp"
#include "libcore/engine.hpp"
#include "libcore/fetch/beast_http_client.hpp"
#include "libcore/primitives/coordinator.hpp"
#include "libcore/rate_limit/gcra.hpp"
#include "service/codec/job_codec.hpp"

namespace gatherd::service {

using core::millis;

// Where a setting configures a component, its default is that component's own (one source):
// the engine's, the coordinator's, the HTTP client's and the request limits' config structs.
namespace defaults {
inline const core::engine_config engine{};
inline const core::coordinator_config primitives{};
inline const core::fetch::http_client_config fetch_client{};
inline const spec_limits limits{};
}  // namespace defaults

struct config {
  std::string host = "0.0.0.0";
  std::uint16_t port = 8080;
  std::size_t threads = 0;          // 0: one per core
  std::size_t compute_threads = 0;  // 0: one per core
  std::size_t max_running = defaults::engine.max_running;
  std::size_t max_queued = defaults::engine.max_queued;
  std::size_t max_retained_jobs = defaults::engine.max_retained;
  std::size_t jobs_max_bytes = defaults::engine.max_job_bytes;  // payload of every job held
  millis default_retention = defaults::engine.default_retention;
  millis max_retention = defaults::limits.max_retention;
  std::size_t max_batch = 1000;
  std::size_t max_gather = 10000;
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 8 << 10;
  millis header_timeout{10000};
  millis body_timeout{30000};
  std::size_t max_connections = 10000;
  // Connections one client address may hold open (0: no cap). Behind a load balancer every
  // client shares its address: raise it or set 0 there.
  std::size_t max_connections_per_client = 1000;
  // A second listener serving only /healthz, /readyz and /metrics (none when unset), so probes
  // and scrapes never queue behind client traffic or its connection caps.
  std::optional<std::uint16_t> admin_port;
  // 429 and 503 answers carry a Retry-After computed from the state that refused, at most this.
  millis retry_after_max{30000};
  // Named primitives
  std::size_t max_primitives = defaults::primitives.max_primitives;
  std::size_t max_waiters = defaults::primitives.max_waiters;
  millis primitive_idle = defaults::primitives.idle_timeout;  // 0: never forgotten
  std::size_t queue_max_bytes = defaults::primitives.queue_max_bytes;    // per queue
  std::size_t queues_max_bytes = defaults::primitives.queues_max_bytes;  // all queues
  // WebSocket sessions (GET /v1/ws)
  std::size_t ws_max_connections = 10000;
  std::size_t ws_max_message_bytes = 1 << 20;
  std::size_t ws_outbox_bytes = 4 << 20;
  millis ws_idle_timeout{60000};
  millis ws_close_timeout{1000};  // for the peer's close frame once we have sent ours
  std::size_t ws_max_inflight = 64;
  std::size_t ws_max_watched = 10000;
  // Outbound fetch (POST /v1/fetch and the fetch job kinds)
  bool allow_private_fetch = false;            // let fetch reach loopback/private/link-local
  std::vector<std::string> fetch_allow_hosts;  // hosts the egress guard lets through
  std::optional<core::rate> fetch_host_rate;   // server-wide limit per host:port; none: unlimited
  std::vector<std::pair<std::string, core::rate>> fetch_host_rates;  // per-host overrides
  std::size_t fetch_max_connections = defaults::fetch_client.max_connections;
  std::size_t fetch_max_connections_per_host = defaults::fetch_client.max_connections_per_origin;
  millis fetch_idle_timeout = defaults::fetch_client.idle_timeout;
  millis fetch_connect_timeout = defaults::fetch_client.connect_timeout;
  millis fetch_timeout =
      defaults::limits.fetch.default_timeout;  // per attempt, when a request does not say
  std::size_t fetch_max_body_bytes =
      defaults::limits.fetch.max_body_bytes;  // the largest max_body_bytes a request may ask
  std::size_t fetch_default_body_bytes =
      defaults::limits.fetch.default_body_bytes;  // max_body_bytes when a request does not say
  std::size_t fetch_max_requests = defaults::limits.fetch.max_requests;  // URLs per batch
  std::size_t fetch_max_concurrency =
      defaults::limits.fetch.max_concurrency;  // a batch's `concurrency` at most
  int fetch_max_redirects =
      defaults::limits.fetch.max_redirects;  // the largest max_redirects a request may ask
  std::string fetch_ca_file;                 // empty: the system's CAs
  millis shutdown_grace{10000};
  millis shutdown_cleanup{5000};  // then the cleanups of the jobs cancelled at shutdown
  millis drain{0};
  std::vector<std::string> api_tokens;
  std::string log_level = "info";
  std::string log_format = "json";
};

// What the command line asked for: run with a config, or print something and exit.
struct command {
  enum class action { run, exit_ok, exit_error } what = action::run;
  std::string output;  // printed before exiting (help, version, routes, errors)
  config settings;
};

command parse_command_line(int argc, const char* const argv[]);

}  // namespace gatherd::service
