#include "service/telemetry/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <map>
#include <tuple>

#include "service/telemetry/process_collector.hpp"

namespace gatherd::service {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

const Histogram::BucketBoundaries request_buckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
const Histogram::BucketBoundaries job_buckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                                 2.5,   5,     10,   30,   60,  300,  1800};

// Only methods we route are labels; anything else is "other" (bounded label values).
std::string_view method_label(std::string_view m) {
  for (std::string_view known : {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"}) {
    if (m == known) return known;
  }
  return "other";
}

}  // namespace

metrics::metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("gatherd_http_requests_total")
                    .Help("HTTP requests answered, by route, method and status code.")
                    .Register(*registry_)),
      request_seconds_(BuildHistogram()
                           .Name("gatherd_http_request_duration_seconds")
                           .Help("Time from a complete request to its response, by route.")
                           .Register(*registry_)),
      connections_open_(BuildGauge()
                            .Name("gatherd_http_connections_open")
                            .Help("Client connections open now.")
                            .Register(*registry_)
                            .Add({})),
      connections_rejected_(
          BuildCounter()
              .Name("gatherd_http_connections_rejected_total")
              .Help("Connections closed at accept, by the cap that was reached "
                    "(max_connections, max_connections_per_client).")
              .Register(*registry_)),
      rejected_full_(connections_rejected_.Add({{"reason", "max_connections"}})),
      rejected_per_client_(connections_rejected_.Add({{"reason", "max_connections_per_client"}})),
      jobs_submitted_(BuildCounter()
                          .Name("gatherd_jobs_submitted_total")
                          .Help("Jobs admitted, by kind.")
                          .Register(*registry_)),
      jobs_finished_(BuildCounter()
                         .Name("gatherd_jobs_finished_total")
                         .Help("Jobs that reached a terminal state, by kind and state.")
                         .Register(*registry_)),
      jobs_rejected_(BuildCounter()
                         .Name("gatherd_jobs_rejected_total")
                         .Help("Jobs refused at admission, by reason (queue_full, shutting_down).")
                         .Register(*registry_)),
      job_retries_(BuildCounter()
                       .Name("gatherd_job_retries_total")
                       .Help("Attempts retried after a failure, by kind.")
                       .Register(*registry_)),
      job_seconds_(BuildHistogram()
                       .Name("gatherd_job_duration_seconds")
                       .Help("Time jobs spent running (started to finished), by kind.")
                       .Register(*registry_)),
      queue_wait_(BuildHistogram()
                      .Name("gatherd_job_queue_wait_seconds")
                      .Help("Time jobs waited for a run slot.")
                      .Register(*registry_)
                      .Add({}, job_buckets)),
      jobs_queued_(BuildGauge()
                       .Name("gatherd_jobs_queued")
                       .Help("Jobs waiting for a run slot.")
                       .Register(*registry_)
                       .Add({})),
      jobs_running_(BuildGauge()
                        .Name("gatherd_jobs_running")
                        .Help("Jobs running now.")
                        .Register(*registry_)
                        .Add({})),
      jobs_retained_(BuildGauge()
                         .Name("gatherd_jobs_retained")
                         .Help("Finished jobs kept for reading.")
                         .Register(*registry_)
                         .Add({})),
      log_dropped_(BuildCounter()
                       .Name("gatherd_log_messages_dropped_total")
                       .Help("Log lines dropped because the log queue was full.")
                       .Register(*registry_)
                       .Add({})),
      gathers_(BuildCounter()
                   .Name("gatherd_gathers_total")
                   .Help("Gathers ended, by outcome (completed, failed, timed_out, abandoned).")
                   .Register(*registry_)),
      gather_seconds_(BuildHistogram()
                          .Name("gatherd_gather_duration_seconds")
                          .Help("Time from a gather's start to its answer.")
                          .Register(*registry_)
                          .Add({}, job_buckets)),
      acquire_wait_(BuildHistogram()
                        .Name("gatherd_primitive_acquire_wait_seconds")
                        .Help("Time from a semaphore or lock acquire request to its grant.")
                        .Register(*registry_)
                        .Add({}, job_buckets)),
      primitive_waiters_(BuildGauge()
                             .Name("gatherd_primitive_waiters")
                             .Help("Requests waiting on a named primitive (all types).")
                             .Register(*registry_)
                             .Add({})),
      lease_expiries_(BuildCounter()
                          .Name("gatherd_primitive_lease_expiries_total")
                          .Help("Permits and queue items whose lease ended before release.")
                          .Register(*registry_)
                          .Add({})),
      queue_items_(BuildGauge()
                       .Name("gatherd_queue_items")
                       .Help("Items in named queues, ready or leased (all queues).")
                       .Register(*registry_)
                       .Add({})),
      queue_bytes_(BuildGauge()
                       .Name("gatherd_queue_bytes")
                       .Help("Payload bytes of the items in named queues, ready or leased (all "
                             "queues; bounded by --queues-max-bytes).")
                       .Register(*registry_)
                       .Add({})),
      job_bytes_(BuildGauge()
                     .Name("gatherd_jobs_bytes")
                     .Help("Payload bytes of the jobs held, unfinished and finished: specs, "
                           "labels, results, errors (bounded by --jobs-max-bytes).")
                     .Register(*registry_)
                     .Add({})),
      limits_(BuildGauge()
                  .Name("gatherd_limit")
                  .Help("Configured limits, by name (max_running, max_queued, ...), for alerts "
                        "and dashboards to compare usage with.")
                  .Register(*registry_)),
      ws_open_(BuildGauge()
                   .Name("gatherd_ws_connections")
                   .Help("Open WebSocket connections.")
                   .Register(*registry_)
                   .Add({})),
      ws_accepted_(BuildCounter()
                       .Name("gatherd_ws_connections_total")
                       .Help("WebSocket connections accepted.")
                       .Register(*registry_)
                       .Add({})),
      process_(std::make_shared<process_collector>()) {
  BuildGauge()
      .Name("gatherd_build_info")
      .Help("Build information; the value is always 1.")
      .Register(*registry_)
      .Add({{"version", GATHERD_VERSION}})
      .Set(1);
  for (auto kind : core::all_job_kinds) {  // also exposes zeros from the start
    const auto k = static_cast<std::size_t>(kind);
    const std::string name(core::to_string(kind));
    submitted_by_kind_[k] = &jobs_submitted_.Add({{"kind", name}});
    retries_by_kind_[k] = &job_retries_.Add({{"kind", name}});
    seconds_by_kind_[k] = &job_seconds_.Add({{"kind", name}}, job_buckets);
    for (auto state : core::all_job_states) {
      if (!core::is_terminal(state)) continue;
      finished_by_kind_state_[k][static_cast<std::size_t>(state)] =
          &jobs_finished_.Add({{"kind", name}, {"state", std::string(core::to_string(state))}});
    }
  }
  for (const char* reason : {"queue_full", "shutting_down", "jobs_memory_full", "job_too_large"})
    jobs_rejected_.Add({{"reason", reason}});
  auto& primitives = BuildGauge()
                         .Name("gatherd_primitives")
                         .Help("Named primitives that exist, by type.")
                         .Register(*registry_);
  auto& expired = BuildCounter()
                      .Name("gatherd_primitives_expired_total")
                      .Help("Named primitives forgotten after --primitive-idle-ms idle, by type.")
                      .Register(*registry_);
  for (auto type : core::all_primitive_types) {
    primitives_by_type_[static_cast<std::size_t>(type)] =
        &primitives.Add({{"type", std::string(core::to_string(type))}});
    expired_by_type_[static_cast<std::size_t>(type)] =
        &expired.Add({{"type", std::string(core::to_string(type))}});
  }
  for (const char* outcome : {"completed", "failed", "timed_out", "abandoned"})
    gathers_.Add({{"outcome", outcome}});
  auto& received = BuildCounter()
                       .Name("gatherd_ws_messages_received_total")
                       .Help("WebSocket messages received, by op (invalid: not a known op).")
                       .Register(*registry_);
  for (std::size_t i = 0; i < ws_ops.size(); ++i)
    ws_received_[i] = &received.Add({{"op", std::string(ws_ops[i])}});
  auto& sent = BuildCounter()
                   .Name("gatherd_ws_messages_sent_total")
                   .Help("WebSocket messages sent, by type.")
                   .Register(*registry_);
  for (std::size_t i = 0; i < ws_types.size(); ++i)
    ws_sent_[i] = &sent.Add({{"type", std::string(ws_types[i])}});
  auto& closed = BuildCounter()
                     .Name("gatherd_ws_closed_total")
                     .Help("WebSocket connections closed, by reason.")
                     .Register(*registry_);
  for (std::size_t i = 0; i < ws_close_reasons.size(); ++i)
    ws_closed_[i] = &closed.Add({{"reason", std::string(ws_close_reasons[i])}});
}

namespace {
template <std::size_t N>
std::size_t label_index(const std::array<std::string_view, N>& values, std::string_view v) {
  for (std::size_t i = 0; i < N; ++i)
    if (values[i] == v) return i;
  return N - 1;
}
}  // namespace

void metrics::set_primitives(const core::coordinator_stats& stats) {
  for (std::size_t i = 0; i < primitives_by_type_.size(); ++i) {
    primitives_by_type_[i]->Set(static_cast<double>(stats.primitives[i].load()));
  }
  primitive_waiters_.Set(static_cast<double>(stats.waiters.load()));
  queue_items_.Set(static_cast<double>(stats.queued_items.load()));
  queue_bytes_.Set(static_cast<double>(stats.queue_bytes.used.load()));
  for (std::size_t i = 0; i < expired_by_type_.size(); ++i) {
    const double expired = static_cast<double>(stats.expired[i].load());
    if (expired > expired_seen_[i]) expired_by_type_[i]->Increment(expired - expired_seen_[i]);
    expired_seen_[i] = expired;
  }
  const double expired = static_cast<double>(stats.lease_expiries.load());
  if (expired > lease_expiries_seen_) lease_expiries_.Increment(expired - lease_expiries_seen_);
  lease_expiries_seen_ = expired;
}

void metrics::set_limit(const std::string& name, double value) {
  limits_.Add({{"name", name}}).Set(value);  // a fixed set of names, set once at start
}

void metrics::ws_opened() {
  ws_open_.Increment();
  ws_accepted_.Increment();
}

void metrics::ws_closed(std::string_view reason) {
  ws_open_.Decrement();
  ws_closed_[label_index(ws_close_reasons, reason)]->Increment();
}

void metrics::ws_received(std::string_view op) {
  ws_received_[label_index(ws_ops, op)]->Increment();
}

void metrics::ws_sent(std::string_view type) {
  ws_sent_[label_index(ws_types, type)]->Increment();
}

void metrics::request_done(std::string_view route, std::string_view method, unsigned status,
                           double seconds) {
  // Per-thread caches: no lock on the hot path once a label set has been seen.
  using key = std::tuple<std::string_view, std::string_view, unsigned>;
  thread_local std::map<key, prometheus::Counter*> counters;
  thread_local std::map<std::string_view, Histogram*> histograms;
  const std::string_view m = method_label(method);
  auto& counter = counters[{route, m, status}];
  if (!counter) {
    counter = &requests_.Add({{"route", std::string(route)},
                              {"method", std::string(m)},
                              {"code", std::to_string(status)}});
  }
  counter->Increment();
  auto& histogram = histograms[route];
  if (!histogram)
    histogram = &request_seconds_.Add({{"route", std::string(route)}}, request_buckets);
  histogram->Observe(seconds);
}

void metrics::job_submitted(core::job_kind kind) {
  submitted_by_kind_[static_cast<std::size_t>(kind)]->Increment();
}

void metrics::job_rejected(std::string_view reason, std::size_t count) {
  jobs_rejected_.Add({{"reason", std::string(reason)}}).Increment(static_cast<double>(count));
}

void metrics::job_retried(core::job_kind kind) {
  retries_by_kind_[static_cast<std::size_t>(kind)]->Increment();
}

void metrics::job_finished(core::job_kind kind, core::job_state state, double run_seconds) {
  const auto k = static_cast<std::size_t>(kind);
  finished_by_kind_state_[k][static_cast<std::size_t>(state)]->Increment();
  seconds_by_kind_[k]->Observe(run_seconds);
}

void metrics::gather_done(std::string_view outcome, double seconds) {
  gathers_.Add({{"outcome", std::string(outcome)}}).Increment();  // four values: bounded
  gather_seconds_.Observe(seconds);
}

void metrics::set_jobs(std::size_t queued, std::size_t running, std::size_t retained) {
  jobs_queued_.Set(static_cast<double>(queued));
  jobs_running_.Set(static_cast<double>(running));
  jobs_retained_.Set(static_cast<double>(retained));
}

void metrics::set_log_dropped(std::size_t dropped) {
  const double now = static_cast<double>(dropped);
  if (now > log_dropped_seen_) log_dropped_.Increment(now - log_dropped_seen_);
  log_dropped_seen_ = now;
}

std::string metrics::scrape() {
  std::lock_guard lock(scrape_mutex_);
  if (refresh_) refresh_(*this);
  auto families = registry_->Collect();
  auto process = process_->Collect();
  families.insert(families.end(), process.begin(), process.end());
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace gatherd::service
