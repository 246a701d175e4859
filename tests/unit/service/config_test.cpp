// The command line and GATHERD_* environment (service/config.hpp): defaults, flags, variables,
// which wins, refusals naming the flag, and the print-and-exit actions.
#include "service/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "service/api/routes.hpp"

extern char** environ;

namespace gatherd::service {
namespace {

using action = command::action;

// Clears every GATHERD_* variable for the test (the developer's or CI's own must not leak in)
// and puts the original ones back afterwards.
class Config : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& name : gatherd_names()) {
      saved_.emplace_back(name, std::getenv(name.c_str()));
      ::unsetenv(name.c_str());
    }
  }
  void TearDown() override {
    for (const std::string& name : gatherd_names()) ::unsetenv(name.c_str());
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
  }

  static void set(const char* name, const char* value) { ::setenv(name, value, 1); }

  static command parse(std::initializer_list<const char*> args) {
    std::vector<const char*> argv{"gatherd"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(nullptr);
    return parse_command_line(static_cast<int>(argv.size() - 1), argv.data());
  }

  // The command is an exit_error whose message contains `what`.
  static void expect_error(const command& cmd, const std::string& what) {
    EXPECT_EQ(cmd.what, action::exit_error) << cmd.output;
    EXPECT_NE(cmd.output.find(what), std::string::npos) << cmd.output;
    EXPECT_TRUE(cmd.output.starts_with("gatherd: ")) << cmd.output;
    EXPECT_TRUE(cmd.output.ends_with("\n(see --help)\n")) << cmd.output;
  }

 private:
  static std::vector<std::string> gatherd_names() {
    std::vector<std::string> names;
    for (char** e = environ; *e; ++e) {
      const std::string entry(*e);
      if (entry.starts_with("GATHERD_")) names.push_back(entry.substr(0, entry.find('=')));
    }
    return names;
  }

  std::vector<std::pair<std::string, std::string>> saved_;
};

std::size_t cores() {
  return std::max(1u, std::thread::hardware_concurrency());
}

TEST_F(Config, DefaultsWithoutFlags) {
  const command cmd = parse({});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  EXPECT_TRUE(cmd.output.empty());
  const config& c = cmd.settings;
  const config d{};
  EXPECT_EQ(c.host, d.host);
  EXPECT_EQ(c.port, d.port);
  EXPECT_EQ(c.threads, cores());  // 0: one per core
  EXPECT_EQ(c.compute_threads, cores());
  EXPECT_EQ(c.max_running, d.max_running);
  EXPECT_EQ(c.max_queued, d.max_queued);
  EXPECT_EQ(c.max_retained_jobs, d.max_retained_jobs);
  EXPECT_EQ(c.default_retention, d.default_retention);
  EXPECT_EQ(c.max_retention, d.max_retention);
  EXPECT_EQ(c.max_batch, d.max_batch);
  EXPECT_EQ(c.max_gather, d.max_gather);
  EXPECT_EQ(c.max_body_bytes, d.max_body_bytes);
  EXPECT_EQ(c.max_header_bytes, d.max_header_bytes);
  EXPECT_EQ(c.header_timeout, d.header_timeout);
  EXPECT_EQ(c.body_timeout, d.body_timeout);
  EXPECT_EQ(c.max_connections, d.max_connections);
  EXPECT_EQ(c.max_primitives, d.max_primitives);
  EXPECT_EQ(c.max_waiters, d.max_waiters);
  EXPECT_EQ(c.ws_max_connections, d.ws_max_connections);
  EXPECT_EQ(c.ws_max_message_bytes, d.ws_max_message_bytes);
  EXPECT_EQ(c.ws_outbox_bytes, d.ws_outbox_bytes);
  EXPECT_EQ(c.ws_idle_timeout, d.ws_idle_timeout);
  EXPECT_EQ(c.ws_max_inflight, d.ws_max_inflight);
  EXPECT_EQ(c.ws_max_watched, d.ws_max_watched);
  EXPECT_EQ(c.allow_private_fetch, d.allow_private_fetch);
  EXPECT_EQ(c.fetch_allow_hosts, d.fetch_allow_hosts);
  EXPECT_EQ(c.fetch_host_rate, d.fetch_host_rate);
  EXPECT_EQ(c.fetch_host_rates, d.fetch_host_rates);
  EXPECT_EQ(c.fetch_max_connections, d.fetch_max_connections);
  EXPECT_EQ(c.fetch_max_connections_per_host, d.fetch_max_connections_per_host);
  EXPECT_EQ(c.fetch_idle_timeout, d.fetch_idle_timeout);
  EXPECT_EQ(c.fetch_connect_timeout, d.fetch_connect_timeout);
  EXPECT_EQ(c.fetch_timeout, d.fetch_timeout);
  EXPECT_EQ(c.fetch_max_body_bytes, d.fetch_max_body_bytes);
  EXPECT_EQ(c.fetch_default_body_bytes, d.fetch_default_body_bytes);
  EXPECT_EQ(c.fetch_max_requests, d.fetch_max_requests);
  EXPECT_EQ(c.fetch_max_concurrency, d.fetch_max_concurrency);
  EXPECT_EQ(c.fetch_max_redirects, d.fetch_max_redirects);
  EXPECT_EQ(c.fetch_ca_file, d.fetch_ca_file);
  EXPECT_EQ(c.shutdown_grace, d.shutdown_grace);
  EXPECT_EQ(c.drain, d.drain);
  EXPECT_EQ(c.api_tokens, d.api_tokens);
  EXPECT_EQ(c.log_level, d.log_level);
  EXPECT_EQ(c.log_format, d.log_format);
}

TEST_F(Config, DefaultsAreTheComponentsOwn) {
  const config d{};
  EXPECT_EQ(d.max_running, core::engine_config{}.max_running);
  EXPECT_EQ(d.max_queued, core::engine_config{}.max_queued);
  EXPECT_EQ(d.max_retained_jobs, core::engine_config{}.max_retained);
  EXPECT_EQ(d.default_retention, core::engine_config{}.default_retention);
  EXPECT_EQ(d.max_retention, spec_limits{}.max_retention);
  EXPECT_EQ(d.fetch_timeout, fetch_limits{}.default_timeout);
  EXPECT_EQ(d.fetch_max_body_bytes, fetch_limits{}.max_body_bytes);
  EXPECT_EQ(d.fetch_default_body_bytes, fetch_limits{}.default_body_bytes);
  EXPECT_EQ(d.fetch_max_requests, fetch_limits{}.max_requests);
  EXPECT_EQ(d.fetch_max_concurrency, fetch_limits{}.max_concurrency);
  EXPECT_EQ(d.fetch_max_redirects, fetch_limits{}.max_redirects);
}

TEST_F(Config, FlagsSetValues) {
  const command cmd = parse({"--host",
                             "127.0.0.1",
                             "--port",
                             "9090",
                             "--threads",
                             "3",
                             "--compute-threads",
                             "5",
                             "--max-running",
                             "8",
                             "--max-queued=20",
                             "--default-retention-ms",
                             "1000",
                             "--max-retention-ms",
                             "2000",
                             "--header-timeout-ms",
                             "500",
                             "--ws-idle-timeout-ms",
                             "250",
                             "--allow-private-fetch",
                             "--fetch-allow-host",
                             "a.example",
                             "--fetch-allow-host",
                             "b.example",
                             "--fetch-host-rate",
                             "50:10",
                             "--fetch-host-rate-for",
                             "Example.COM:8080=5",
                             "--fetch-host-rate-for",
                             "other.example=2.5:3",
                             "--fetch-max-concurrency",
                             "32",
                             "--fetch-ca-file",
                             "/etc/ca.pem",
                             "--shutdown-grace-ms",
                             "0",
                             "--drain-ms",
                             "1500",
                             "--api-token",
                             "t1",
                             "--api-token",
                             "t2",
                             "--log-level",
                             "debug",
                             "--log-format",
                             "text"});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  const config& c = cmd.settings;
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 9090);
  EXPECT_EQ(c.threads, 3u);
  EXPECT_EQ(c.compute_threads, 5u);
  EXPECT_EQ(c.max_running, 8u);
  EXPECT_EQ(c.max_queued, 20u);
  EXPECT_EQ(c.default_retention, millis{1000});
  EXPECT_EQ(c.max_retention, millis{2000});
  EXPECT_EQ(c.header_timeout, millis{500});
  EXPECT_EQ(c.ws_idle_timeout, millis{250});
  EXPECT_TRUE(c.allow_private_fetch);
  EXPECT_EQ(c.fetch_allow_hosts, (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ(c.fetch_host_rate, (core::rate{50, 10}));
  ASSERT_EQ(c.fetch_host_rates.size(), 2u);
  EXPECT_EQ(c.fetch_host_rates[0].first, "example.com:8080");
  EXPECT_EQ(c.fetch_host_rates[0].second, (core::rate{5, 1}));
  EXPECT_EQ(c.fetch_host_rates[1].first, "other.example");
  EXPECT_EQ(c.fetch_host_rates[1].second, (core::rate{2.5, 3}));
  EXPECT_EQ(c.fetch_max_concurrency, 32u);
  EXPECT_EQ(c.fetch_ca_file, "/etc/ca.pem");
  EXPECT_EQ(c.shutdown_grace, millis{0});
  EXPECT_EQ(c.drain, millis{1500});
  EXPECT_EQ(c.api_tokens, (std::vector<std::string>{"t1", "t2"}));
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_format, "text");
}

TEST_F(Config, HostRateZeroMeansNone) {
  const command cmd = parse({"--fetch-host-rate", "0"});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  EXPECT_EQ(cmd.settings.fetch_host_rate, std::nullopt);
}

TEST_F(Config, CommaSeparatedLists) {
  const command cmd =
      parse({"--api-tokens", "a, b,,c ", "--fetch-allow-hosts", " x.example ,y.example,"});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  EXPECT_EQ(cmd.settings.api_tokens, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(cmd.settings.fetch_allow_hosts, (std::vector<std::string>{"x.example", "y.example"}));
}

TEST_F(Config, EnvironmentVariablesAreRead) {
  set("GATHERD_MAX_RUNNING", "7");
  set("GATHERD_PORT", "0");
  set("GATHERD_LOG_LEVEL", "warn");
  set("GATHERD_LOG_FORMAT", "text");
  set("GATHERD_FETCH_HOST_RATE", "20:4");
  set("GATHERD_FETCH_MAX_REDIRECTS", "3");
  set("GATHERD_SHUTDOWN_GRACE_MS", "2500");
  set("GATHERD_FETCH_ALLOW_HOSTS", "upstream,cache");
  const command cmd = parse({});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  const config& c = cmd.settings;
  EXPECT_EQ(c.max_running, 7u);
  EXPECT_EQ(c.port, 0);
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.log_format, "text");
  EXPECT_EQ(c.fetch_host_rate, (core::rate{20, 4}));
  EXPECT_EQ(c.fetch_max_redirects, 3);
  EXPECT_EQ(c.shutdown_grace, millis{2500});
  EXPECT_EQ(c.fetch_allow_hosts, (std::vector<std::string>{"upstream", "cache"}));
}

TEST_F(Config, ApiTokensVariableIsCommaSeparated) {
  set("GATHERD_API_TOKENS", "alpha, beta,,gamma");
  const command cmd = parse({});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  EXPECT_EQ(cmd.settings.api_tokens, (std::vector<std::string>{"alpha", "beta", "gamma"}));
}

TEST_F(Config, UnknownVariablesAreIgnored) {
  set("GATHERD_NOT_AN_OPTION", "1");
  set("GATHERD_MAX_RUN", "0");       // not a prefix match of --max-running
  set("GATHERD_HTTP_PORT", "1234");  // docker-compose's own variable
  const command cmd = parse({});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  EXPECT_EQ(cmd.settings.max_running, config{}.max_running);
  EXPECT_EQ(cmd.settings.port, config{}.port);
}

TEST_F(Config, FlagWinsOverVariable) {
  set("GATHERD_MAX_RUNNING", "7");
  set("GATHERD_LOG_FORMAT", "text");
  set("GATHERD_FETCH_HOST_RATE", "20");
  const command cmd =
      parse({"--max-running", "9", "--log-format", "json", "--fetch-host-rate", "30:2"});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  EXPECT_EQ(cmd.settings.max_running, 9u);
  EXPECT_EQ(cmd.settings.log_format, "json");
  EXPECT_EQ(cmd.settings.fetch_host_rate, (core::rate{30, 2}));
}

TEST_F(Config, InvalidValuesNameTheFlag) {
  expect_error(parse({"--max-running", "0"}), "--max-running must be at least 1");
  expect_error(parse({"--log-format", "xml"}), "--log-format must be json or text");
  expect_error(parse({"--log-level", "verbose"}),
               "--log-level must be one of trace, debug, info, warn, error, off");
  expect_error(parse({"--fetch-host-rate", "abc"}),
               "--fetch-host-rate takes RATE or RATE:BURST (e.g. 50 or 50:10), not 'abc'");
  expect_error(parse({"--fetch-host-rate", "5x"}),
               "--fetch-host-rate takes RATE or RATE:BURST (e.g. 50 or 50:10), not '5x'");
  expect_error(parse({"--fetch-host-rate", "0:5"}),
               "--fetch-host-rate: the rate must be in (0, 1e6] per second and the burst in "
               "[1, 100000]");
  expect_error(parse({"--fetch-host-rate", "5:0"}), "--fetch-host-rate: the rate must be in");
  expect_error(parse({"--fetch-host-rate-for", "=5"}),
               "--fetch-host-rate-for takes HOST[:PORT]=RATE[:BURST], not '=5'");
  expect_error(parse({"--fetch-host-rate-for", "example.com"}),
               "--fetch-host-rate-for takes HOST[:PORT]=RATE[:BURST], not 'example.com'");
  expect_error(parse({"--fetch-host-rate-for", "example.com=fast"}),
               "--fetch-host-rate-for takes RATE or RATE:BURST");
  expect_error(parse({"--max-running", "abc"}), "'--max-running'");
  expect_error(parse({"--port", "70000"}), "'--port'");
  expect_error(parse({"--header-timeout-ms=-5"}), "--header-timeout-ms must not be negative");
  expect_error(parse({"--max-header-bytes", "100"}), "--max-header-bytes must be at least 256");
  expect_error(parse({"--ws-idle-timeout-ms", "99"}), "--ws-idle-timeout-ms must be at least 100");
  expect_error(parse({"--fetch-default-body-bytes", "100", "--fetch-max-body-bytes", "10"}),
               "--fetch-default-body-bytes must not exceed --fetch-max-body-bytes");
  expect_error(parse({"--fetch-max-redirects", "101"}),
               "--fetch-max-redirects must be in [0, 100]");
  expect_error(parse({"--default-retention-ms", "2000", "--max-retention-ms", "1000"}),
               "--default-retention-ms must not exceed --max-retention-ms");
  expect_error(parse({"--no-such-flag"}), "--no-such-flag");
  expect_error(parse({"--max-running"}), "--max-running");
}

TEST_F(Config, CountsAndPortsTakeDigitsOnly) {
  // lexical_cast would read these as 2^64-1 and 65535: "no limit" by accident.
  expect_error(parse({"--max-running=-1"}), "'--max-running'");
  expect_error(parse({"--max-queued", "-5"}), "--max-queued");
  expect_error(parse({"--port=-1"}), "'--port'");
  expect_error(parse({"--max-connections", "+3"}), "'--max-connections'");
  expect_error(parse({"--max-connections", "3 "}), "'--max-connections'");
  expect_error(parse({"--port", "65536"}), "'--port'");
  set("GATHERD_MAX_QUEUED", "-1");
  expect_error(parse({}), "max-queued");
  ::unsetenv("GATHERD_MAX_QUEUED");
  const command ok = parse({"--max-running", "7", "--port", "65535"});
  ASSERT_EQ(ok.what, command::action::run) << ok.output;
  EXPECT_EQ(ok.settings.max_running, 7u);
  EXPECT_EQ(ok.settings.port, 65535);
}

TEST_F(Config, RateBurstMustBeAnInteger) {
  expect_error(parse({"--fetch-host-rate", "50:10abc"}), "not '50:10abc'");
  expect_error(parse({"--fetch-host-rate", "50:1.9"}), "not '50:1.9'");
}

TEST_F(Config, EmptyVariableIsUnset) {
  set("GATHERD_ALLOW_PRIVATE_FETCH", "");  // compose's "${X:-}" must not turn the switch on
  set("GATHERD_MAX_RUNNING", "");
  const command cmd = parse({});
  ASSERT_EQ(cmd.what, action::run) << cmd.output;
  EXPECT_FALSE(cmd.settings.allow_private_fetch);
  EXPECT_EQ(cmd.settings.max_running, config{}.max_running);
}

TEST_F(Config, PrintAndExitFlagsAreNotReadFromTheEnvironment) {
  set("GATHERD_VERSION", "1.2.3");  // a common build variable
  set("GATHERD_HELP", "1");
  set("GATHERD_PRINT_ROUTES", "1");
  EXPECT_EQ(parse({}).what, action::run);
}

TEST_F(Config, InvalidVariableIsAnError) {
  set("GATHERD_MAX_RUNNING", "0");
  expect_error(parse({}), "--max-running must be at least 1");
  set("GATHERD_MAX_RUNNING", "lots");
  expect_error(parse({}), "max-running");
  set("GATHERD_MAX_RUNNING", "4");
  set("GATHERD_LOG_FORMAT", "xml");
  expect_error(parse({}), "--log-format must be json or text");
}

TEST_F(Config, Help) {
  const command cmd = parse({"--help"});
  EXPECT_EQ(cmd.what, action::exit_ok);
  EXPECT_TRUE(cmd.output.starts_with("gatherd: asyncio's concurrency primitives over HTTP\n"))
      << cmd.output;
  for (const char* flag : {"--help", "--version", "--print-routes", "--max-running",
                           "--fetch-host-rate", "--api-tokens", "--log-format"}) {
    EXPECT_NE(cmd.output.find(flag), std::string::npos) << flag;
  }
}

TEST_F(Config, Version) {
  const command cmd = parse({"--version"});
  EXPECT_EQ(cmd.what, action::exit_ok);
  EXPECT_EQ(cmd.output, "gatherd " GATHERD_VERSION "\n");
}

TEST_F(Config, PrintRoutes) {
  const command cmd = parse({"--print-routes"});
  EXPECT_EQ(cmd.what, action::exit_ok);
  EXPECT_TRUE(cmd.output.starts_with("GET /healthz\n")) << cmd.output;
  EXPECT_NE(cmd.output.find("\nPOST /v1/jobs\n"), std::string::npos);
  EXPECT_NE(cmd.output.find("\nGET /v1/jobs/{id}\n"), std::string::npos);
  // One line per route, in the table's order.
  std::string expected;
  const route_table table = api_routes();
  for (const route& r : table.routes()) expected += r.method + " " + r.pattern + "\n";
  EXPECT_EQ(cmd.output, expected);
}

TEST_F(Config, ExitActionsComeBeforeValidation) {
  // --help answers even when another flag's value would be refused by validation.
  EXPECT_EQ(parse({"--help", "--max-running", "0"}).what, action::exit_ok);
  EXPECT_EQ(parse({"--print-routes", "--log-format", "xml"}).what, action::exit_ok);
}

}  // namespace
}  // namespace gatherd::service
