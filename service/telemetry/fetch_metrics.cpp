#include "service/telemetry/fetch_metrics.hpp"

namespace gatherd::service {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const prometheus::Histogram::BucketBoundaries fetch_buckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

prometheus::Counter& single_counter(prometheus::Registry& r, const char* name, const char* help) {
  return BuildCounter().Name(name).Help(help).Register(r).Add({});
}

// A counter that follows a monotonic value kept elsewhere.
void follow(prometheus::Counter& counter, double& seen, std::uint64_t value) {
  const double now = static_cast<double>(value);
  if (now > seen) counter.Increment(now - seen);
  seen = now;
}

}  // namespace

fetch_metrics::fetch_metrics(prometheus::Registry& registry)
    : seconds_(BuildHistogram()
                   .Name("gatherd_fetch_request_duration_seconds")
                   .Help("Time of each outbound attempt, from sending (connect included) to the "
                         "end of its response or its error.")
                   .Register(registry)
                   .Add({}, fetch_buckets)),
      retries_(single_counter(registry, "gatherd_fetch_retries_total",
                              "Outbound requests retried (connect errors, timeouts, 429, 5xx).")),
      throttled_(single_counter(registry, "gatherd_fetch_throttled_seconds_total",
                                "Time outbound requests waited for rate-limit tokens, summed.")),
      connections_open_(BuildGauge()
                            .Name("gatherd_fetch_connections")
                            .Help("Outbound connections open now (in use or pooled).")
                            .Register(registry)
                            .Add({})),
      connections_opened_(single_counter(registry, "gatherd_fetch_connections_opened_total",
                                         "Outbound connections opened.")),
      connections_reused_(single_counter(registry, "gatherd_fetch_connections_reused_total",
                                         "Outbound requests sent on a pooled keep-alive "
                                         "connection.")),
      egress_denied_(single_counter(registry, "gatherd_fetch_egress_denied_total",
                                    "Outbound requests refused by the egress guard "
                                    "(private, loopback, link-local or metadata addresses).")) {
  auto& requests = BuildCounter()
                       .Name("gatherd_fetch_requests_total")
                       .Help(
                           "Outbound attempts, by outcome: the status class (2xx, ...) or the "
                           "error type (connect, dns, tls, timeout, fetch_denied, ...).")
                       .Register(registry);
  for (std::size_t i = 0; i < outcomes.size(); ++i)
    requests_[i] = &requests.Add({{"outcome", std::string(outcomes[i])}});
  auto& batches = BuildCounter()
                      .Name("gatherd_fetch_batches_total")
                      .Help("POST /v1/fetch batches started, by mode (json, stream, async).")
                      .Register(registry);
  std::size_t i = 0;
  for (const char* mode : {"json", "stream", "async"})
    batches_[i++] = &batches.Add({{"mode", mode}});
}

void fetch_metrics::attempt_done(std::string_view outcome, double seconds) {
  std::size_t i = 0;
  while (i + 1 < outcomes.size() && outcomes[i] != outcome) ++i;
  requests_[i]->Increment();
  seconds_.Observe(seconds);
}

void fetch_metrics::set_client(const core::fetch::http_client_stats& stats) {
  std::lock_guard lock(seen_mutex_);
  connections_open_.Set(static_cast<double>(stats.connections_open.load()));
  follow(connections_opened_, opened_seen_, stats.connections_opened.load());
  follow(connections_reused_, reused_seen_, stats.connections_reused.load());
  follow(egress_denied_, denied_seen_, stats.egress_denied.load());
}

}  // namespace gatherd::service
