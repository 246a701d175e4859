#include "service/config.hpp"

#include <boost/algorithm/string.hpp>
#include <boost/program_options.hpp>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "service/api/routes.hpp"

// Counts and ports: Boost's lexical_cast reads "-1" as the largest unsigned value, so
// `--max-running=-1` would mean "no limit". These strict readers take decimal digits only.
// They are found by argument-dependent lookup on boost::any, and beat program_options' generic
// validator (its last parameter is a long, theirs an int).
namespace boost {
template <class Unsigned>
void validate_unsigned(boost::any& v, const std::vector<std::string>& values) {
  program_options::validators::check_first_occurrence(v);
  const std::string& text = program_options::validators::get_single_string(values);
  Unsigned n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
    throw program_options::invalid_option_value(text);
  }
  v = n;
}
void validate(boost::any& v, const std::vector<std::string>& values, std::size_t*, int) {
  validate_unsigned<std::size_t>(v, values);
}
void validate(boost::any& v, const std::vector<std::string>& values, std::uint16_t*, int) {
  validate_unsigned<std::uint16_t>(v, values);
}
}  // namespace boost

namespace gatherd::service {

namespace po = boost::program_options;

namespace {

// GATHERD_MAX_RUNNING -> max-running, for options that exist; GATHERD_API_TOKENS is the
// comma-separated form of the repeatable --api-token.
std::string env_to_option(const std::string& env, const po::options_description& options) {
  static const std::string prefix = "GATHERD_";
  if (!env.starts_with(prefix)) return {};
  // An empty variable is unset (compose passes "${X:-}"): it must not turn a switch on.
  if (const char* value = std::getenv(env.c_str()); value == nullptr || *value == '\0') return {};
  std::string name = env.substr(prefix.size());
  if (name == "API_TOKENS") return "api-tokens";
  // Print-and-exit flags are for the command line only: GATHERD_VERSION is a common build
  // variable, and must not turn a server start into printing a version.
  if (name == "HELP" || name == "VERSION" || name == "PRINT_ROUTES") return {};
  boost::algorithm::to_lower(name);
  boost::algorithm::replace_all(name, "_", "-");
  return options.find_nothrow(name, false) ? name : std::string{};
}

// "R" or "R:B": R requests per second, bursts of B (default 1).
core::rate parse_rate(const std::string& text, const std::string& flag) {
  core::rate r;
  const auto colon = text.find(':');
  try {
    std::size_t used = 0;
    r.per_second = std::stod(text.substr(0, colon), &used);
    if (used != text.substr(0, colon).size()) throw std::invalid_argument(text);
    if (colon != std::string::npos) {
      const std::string burst = text.substr(colon + 1);
      r.burst = std::stoi(burst, &used);
      if (used != burst.size()) throw std::invalid_argument(text);
    }
  } catch (const std::exception&) {
    throw po::error(flag + " takes RATE or RATE:BURST (e.g. 50 or 50:10), not '" + text + "'");
  }
  if (!(r.per_second > 0 && r.per_second <= 1e6) || r.burst < 1 || r.burst > 100000) {
    throw po::error(flag +
                    ": the rate must be in (0, 1e6] per second and the burst in [1, 100000]");
  }
  return r;
}

void validate(const config& c) {
  auto require = [](bool ok, const char* what) {
    if (!ok) throw po::error(what);
  };
  require(c.max_running >= 1, "--max-running must be at least 1");
  require(c.max_batch >= 1, "--max-batch must be at least 1");
  require(c.max_gather >= 1, "--max-gather must be at least 1");
  require(c.max_body_bytes >= 1, "--max-body-bytes must be at least 1");
  require(c.max_header_bytes >= 256, "--max-header-bytes must be at least 256");
  require(c.max_connections >= 1, "--max-connections must be at least 1");
  require(c.header_timeout.count() > 0 && c.body_timeout.count() > 0, "timeouts must be positive");
  require(c.max_primitives >= 1 && c.max_waiters >= 1,
          "--max-primitives and --max-waiters must be at least 1");
  require(c.queue_max_bytes >= 1 && c.queues_max_bytes >= 1 && c.jobs_max_bytes >= 1,
          "--queue-max-bytes, --queues-max-bytes and --jobs-max-bytes must be at least 1");
  require(c.ws_max_message_bytes >= 64, "--ws-max-message-bytes must be at least 64");
  require(c.ws_outbox_bytes >= 4096, "--ws-outbox-bytes must be at least 4096");
  require(c.ws_close_timeout.count() >= 1, "--ws-close-timeout-ms must be at least 1");
  require(c.retry_after_max.count() >= 1000, "--retry-after-max-ms must be at least 1000");
  require(c.ws_idle_timeout.count() >= 100, "--ws-idle-timeout-ms must be at least 100");
  require(c.ws_max_inflight >= 1, "--ws-max-inflight must be at least 1");
  require(c.fetch_max_connections >= 1 && c.fetch_max_connections_per_host >= 1,
          "--fetch-max-connections and --fetch-max-connections-per-host must be at least 1");
  require(c.fetch_timeout.count() > 0 && c.fetch_connect_timeout.count() > 0,
          "fetch timeouts must be positive");
  require(c.fetch_max_requests >= 1 && c.fetch_max_concurrency >= 1,
          "--fetch-max-requests and --fetch-max-concurrency must be at least 1");
  require(c.fetch_default_body_bytes <= c.fetch_max_body_bytes,
          "--fetch-default-body-bytes must not exceed --fetch-max-body-bytes");
  require(c.fetch_max_redirects >= 0 && c.fetch_max_redirects <= 100,
          "--fetch-max-redirects must be in [0, 100]");
  require(c.default_retention <= c.max_retention,
          "--default-retention-ms must not exceed --max-retention-ms");
  require(c.log_format == "json" || c.log_format == "text", "--log-format must be json or text");
  static const char* levels[] = {"trace", "debug", "info", "warn", "error", "off"};
  require(std::find(std::begin(levels), std::end(levels), c.log_level) != std::end(levels),
          "--log-level must be one of trace, debug, info, warn, error, off");
}

}  // namespace

command parse_command_line(int argc, const char* const argv[]) {
  command cmd;
  config& c = cmd.settings;
  std::int64_t header_timeout = 0, body_timeout = 0, retention = 0, max_retention = 0, grace = 0,
               drain = 0, ws_idle = 0, ws_close = 0, retry_after_max = 0,
               admin_port = -1, fetch_idle = 0, fetch_connect = 0, fetch_timeout = 0,
               primitive_idle = 0, cleanup = 0;
  std::string tokens_csv, host_rate, allow_hosts_csv;
  std::vector<std::string> host_rates;

  po::options_description options("gatherd options (each also read from GATHERD_<NAME>)");
  // clang-format off
  options.add_options()
    ("help", "print this help and exit")
    ("version", "print the version and exit")
    ("print-routes", "print the HTTP routes, one 'METHOD /path' per line, and exit")
    ("host", po::value(&c.host)->default_value(c.host), "listen address")
    ("port", po::value(&c.port)->default_value(c.port), "listen port; 0 picks a free one")
    ("threads", po::value(&c.threads)->default_value(0), "I/O threads; 0 = one per core")
    ("compute-threads", po::value(&c.compute_threads)->default_value(0), "worker threads for compute jobs; 0 = one per core")
    ("max-running", po::value(&c.max_running)->default_value(c.max_running), "jobs running at once")
    ("max-queued", po::value(&c.max_queued)->default_value(c.max_queued), "jobs waiting for a run slot; beyond: 429 queue_full")
    ("max-retained-jobs", po::value(&c.max_retained_jobs)->default_value(c.max_retained_jobs), "finished jobs kept; oldest evicted first")
    ("jobs-max-bytes", po::value(&c.jobs_max_bytes)->default_value(c.jobs_max_bytes), "payload bytes of every job held (specs, labels, results, errors); oldest finished evicted first, then 429")
    ("default-retention-ms", po::value(&retention)->default_value(c.default_retention.count()), "how long a finished job is kept when its spec does not say")
    ("max-retention-ms", po::value(&max_retention)->default_value(c.max_retention.count()), "largest retention_ms a spec may ask for")
    ("max-batch", po::value(&c.max_batch)->default_value(c.max_batch), "jobs per POST /v1/jobs/batch")
    ("max-gather", po::value(&c.max_gather)->default_value(c.max_gather), "entries per POST /v1/gather")
    ("max-body-bytes", po::value(&c.max_body_bytes)->default_value(c.max_body_bytes), "request body limit (413)")
    ("max-header-bytes", po::value(&c.max_header_bytes)->default_value(c.max_header_bytes), "request header limit (431)")
    ("header-timeout-ms", po::value(&header_timeout)->default_value(c.header_timeout.count()), "a complete request header within this of connect or of the previous response")
    ("body-timeout-ms", po::value(&body_timeout)->default_value(c.body_timeout.count()), "a complete request body within this after its header")
    ("max-connections", po::value(&c.max_connections)->default_value(c.max_connections), "open client connections; more are closed at accept")
    ("max-connections-per-client", po::value(&c.max_connections_per_client)->default_value(c.max_connections_per_client), "open connections per client address; more are closed at accept; 0 = no cap")
    ("admin-port", po::value(&admin_port), "a second listener (on --host) serving only /healthz, /readyz and /metrics; 0 picks a free one; unset: none")
    ("retry-after-max-ms", po::value(&retry_after_max)->default_value(c.retry_after_max.count()), "the largest Retry-After a 429 or 503 carries (it is computed from the state that refused)")
    ("max-primitives", po::value(&c.max_primitives)->default_value(c.max_primitives), "named semaphores, locks, events, barriers and queues, all together; more: 429")
    ("max-waiters", po::value(&c.max_waiters)->default_value(c.max_waiters), "waiters per named primitive; more: 429")
    ("primitive-idle-ms", po::value(&primitive_idle)->default_value(c.primitive_idle.count()), "a named primitive idle this long (no holder, waiter or item; an event not set) is forgotten; 0 = never")
    ("queue-max-bytes", po::value(&c.queue_max_bytes)->default_value(c.queue_max_bytes), "payload bytes of one queue's items, and the largest max_bytes a queue may ask for")
    ("queues-max-bytes", po::value(&c.queues_max_bytes)->default_value(c.queues_max_bytes), "payload bytes of the items of every queue together")
    ("ws-max-connections", po::value(&c.ws_max_connections)->default_value(c.ws_max_connections), "open WebSockets; more upgrades get 429")
    ("ws-max-message-bytes", po::value(&c.ws_max_message_bytes)->default_value(c.ws_max_message_bytes), "largest WebSocket message accepted; bigger closes with 1009")
    ("ws-outbox-bytes", po::value(&c.ws_outbox_bytes)->default_value(c.ws_outbox_bytes), "outbound bytes queued per WebSocket; a client that lets more pile up is closed with 1008")
    ("ws-idle-timeout-ms", po::value(&ws_idle)->default_value(c.ws_idle_timeout.count()), "a WebSocket peer silent this long (not even a pong) is dropped; pings go out at half of it")
    ("ws-close-timeout-ms", po::value(&ws_close)->default_value(c.ws_close_timeout.count()), "how long a closing WebSocket waits for the peer's close frame (on shutdown too)")
    ("ws-max-inflight", po::value(&c.ws_max_inflight)->default_value(c.ws_max_inflight), "operations running at once per WebSocket; beyond, reading pauses")
    ("ws-max-watched", po::value(&c.ws_max_watched)->default_value(c.ws_max_watched), "job ids watched per WebSocket")
    ("allow-private-fetch", po::bool_switch(&c.allow_private_fetch), "let fetch reach loopback, private, link-local and metadata addresses (tests, local demos)")
    ("fetch-allow-host", po::value(&c.fetch_allow_hosts)->composing(), "a host fetch may reach whatever it resolves to (repeatable)")
    ("fetch-allow-hosts", po::value(&allow_hosts_csv), "comma-separated --fetch-allow-host (GATHERD_FETCH_ALLOW_HOSTS)")
    ("fetch-host-rate", po::value(&host_rate), "server-wide limit per host:port for every batch and fetch job, RATE[:BURST] per second; unset: none")
    ("fetch-host-rate-for", po::value(&host_rates)->composing(), "HOST[:PORT]=RATE[:BURST], a per-host override (repeatable)")
    ("fetch-max-connections", po::value(&c.fetch_max_connections)->default_value(c.fetch_max_connections), "outbound connections in all; more requests wait")
    ("fetch-max-connections-per-host", po::value(&c.fetch_max_connections_per_host)->default_value(c.fetch_max_connections_per_host), "outbound connections per origin; more requests wait")
    ("fetch-idle-ms", po::value(&fetch_idle)->default_value(c.fetch_idle_timeout.count()), "pooled keep-alive connections idle this long are closed")
    ("fetch-connect-timeout-ms", po::value(&fetch_connect)->default_value(c.fetch_connect_timeout.count()), "DNS + connect + TLS handshake")
    ("fetch-timeout-ms", po::value(&fetch_timeout)->default_value(c.fetch_timeout.count()), "one attempt of a fetch when the request does not say (timeout_ms / attempt_timeout_ms)")
    ("fetch-max-body-bytes", po::value(&c.fetch_max_body_bytes)->default_value(c.fetch_max_body_bytes), "the largest max_body_bytes a request may ask for")
    ("fetch-default-body-bytes", po::value(&c.fetch_default_body_bytes)->default_value(c.fetch_default_body_bytes), "response bodies are cut here when the request does not say")
    ("fetch-max-requests", po::value(&c.fetch_max_requests)->default_value(c.fetch_max_requests), "URLs per POST /v1/fetch")
    ("fetch-max-concurrency", po::value(&c.fetch_max_concurrency)->default_value(c.fetch_max_concurrency), "the largest `concurrency` a batch may ask for")
    ("fetch-max-redirects", po::value(&c.fetch_max_redirects)->default_value(c.fetch_max_redirects), "the largest max_redirects a request may ask for")
    ("fetch-ca-file", po::value(&c.fetch_ca_file), "PEM file of the CAs fetch trusts instead of the system's")
    ("shutdown-grace-ms", po::value(&grace)->default_value(c.shutdown_grace.count()), "on SIGTERM, running jobs get this long before they are cancelled")
    ("shutdown-cleanup-ms", po::value(&cleanup)->default_value(c.shutdown_cleanup.count()), "then the jobs cancelled at shutdown get this long to clean up before the process exits")
    ("drain-ms", po::value(&drain)->default_value(c.drain.count()), "on SIGTERM, keep accepting this long (readiness already 503)")
    ("api-token", po::value(&c.api_tokens)->composing(), "bearer token required on /v1/* (repeatable)")
    ("api-tokens", po::value(&tokens_csv), "comma-separated tokens (GATHERD_API_TOKENS)")
    ("log-level", po::value(&c.log_level)->default_value(c.log_level), "trace, debug, info, warn, error, off")
    ("log-format", po::value(&c.log_format)->default_value(c.log_format), "json or text");
  // clang-format on

  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::store(po::parse_environment(
                  options, [&](const std::string& env) { return env_to_option(env, options); }),
              vm);
    if (vm.count("help")) {
      std::ostringstream out;
      out << "gatherd: asyncio's concurrency primitives over HTTP\n\n" << options << '\n';
      cmd.what = command::action::exit_ok;
      cmd.output = out.str();
      return cmd;
    }
    if (vm.count("version")) {
      cmd.what = command::action::exit_ok;
      cmd.output = "gatherd " GATHERD_VERSION "\n";
      return cmd;
    }
    if (vm.count("print-routes")) {
      cmd.what = command::action::exit_ok;
      const route_table table = api_routes();
      for (const auto& r : table.routes()) cmd.output += r.method + " " + r.pattern + "\n";
      return cmd;
    }
    po::notify(vm);
    auto non_negative = [](std::int64_t v, const char* name) {
      if (v < 0) throw po::error(std::string(name) + " must not be negative");
      return millis{v};
    };
    c.header_timeout = non_negative(header_timeout, "--header-timeout-ms");
    c.body_timeout = non_negative(body_timeout, "--body-timeout-ms");
    c.default_retention = non_negative(retention, "--default-retention-ms");
    c.max_retention = non_negative(max_retention, "--max-retention-ms");
    c.shutdown_grace = non_negative(grace, "--shutdown-grace-ms");
    c.shutdown_cleanup = non_negative(cleanup, "--shutdown-cleanup-ms");
    c.drain = non_negative(drain, "--drain-ms");
    c.ws_idle_timeout = non_negative(ws_idle, "--ws-idle-timeout-ms");
    c.ws_close_timeout = non_negative(ws_close, "--ws-close-timeout-ms");
    c.primitive_idle = non_negative(primitive_idle, "--primitive-idle-ms");
    c.retry_after_max = non_negative(retry_after_max, "--retry-after-max-ms");
    if (vm.count("admin-port")) {
      if (admin_port < 0 || admin_port > 65535) throw po::error("--admin-port must be in [0, 65535]");
      c.admin_port = static_cast<std::uint16_t>(admin_port);
    }
    c.fetch_idle_timeout = non_negative(fetch_idle, "--fetch-idle-ms");
    c.fetch_connect_timeout = non_negative(fetch_connect, "--fetch-connect-timeout-ms");
    c.fetch_timeout = non_negative(fetch_timeout, "--fetch-timeout-ms");
    if (!host_rate.empty() && host_rate != "0") {
      c.fetch_host_rate = parse_rate(host_rate, "--fetch-host-rate");
    }
    for (const std::string& entry : host_rates) {
      const auto eq = entry.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw po::error("--fetch-host-rate-for takes HOST[:PORT]=RATE[:BURST], not '" + entry +
                        "'");
      }
      c.fetch_host_rates.emplace_back(boost::algorithm::to_lower_copy(entry.substr(0, eq)),
                                      parse_rate(entry.substr(eq + 1), "--fetch-host-rate-for"));
    }
    if (!allow_hosts_csv.empty()) {
      std::vector<std::string> parts;
      boost::algorithm::split(parts, allow_hosts_csv, boost::algorithm::is_any_of(","));
      for (auto& h : parts) {
        boost::algorithm::trim(h);
        if (!h.empty()) c.fetch_allow_hosts.push_back(h);
      }
    }
    if (!tokens_csv.empty()) {
      std::vector<std::string> parts;
      boost::algorithm::split(parts, tokens_csv, boost::algorithm::is_any_of(","));
      for (auto& t : parts) {
        boost::algorithm::trim(t);
        if (!t.empty()) c.api_tokens.push_back(t);
      }
    }
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    if (c.threads == 0) c.threads = cores;
    if (c.compute_threads == 0) c.compute_threads = cores;
    validate(c);
  } catch (const po::error& e) {
    cmd.what = command::action::exit_error;
    cmd.output = std::string("gatherd: ") + e.what() + "\n(see --help)\n";
  }
  return cmd;
}

}  // namespace gatherd::service
