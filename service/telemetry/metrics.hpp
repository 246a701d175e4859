// Prometheus metrics of the process, served by our own /metrics route (no civetweb).
// Counters and histograms are looked up once and cached: Family::Add takes a mutex.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "libcore/job.hpp"
#include "libcore/primitives/coordinator.hpp"

namespace gatherd::service {

class metrics {
 public:
  metrics();

  // HTTP
  void request_done(std::string_view route, std::string_view method, unsigned status,
                    double seconds);
  void connection_opened() { connections_open_.Increment(); }
  void connection_closed() { connections_open_.Decrement(); }
  // reason: "max_connections" or "max_connections_per_client"
  void connection_rejected(std::string_view reason) {
    (reason == "max_connections" ? rejected_full_ : rejected_per_client_).Increment();
  }

  // Jobs
  void job_submitted(core::job_kind kind);
  void job_rejected(std::string_view reason, std::size_t count);
  void job_started(double queue_wait_seconds) { queue_wait_.Observe(queue_wait_seconds); }
  void job_retried(core::job_kind kind);
  void job_finished(core::job_kind kind, core::job_state state, double run_seconds);

  // Gathers
  void gather_done(std::string_view outcome, double seconds);

  // Named primitives: the acquire wait as it happens, the rest read at scrape time.
  void primitive_acquired(double wait_seconds) { acquire_wait_.Observe(wait_seconds); }
  void set_primitives(const core::coordinator_stats& stats);

  // WebSocket sessions. Label values come from the fixed lists below (anything else counts
  // under the last entry), so the label sets stay bounded.
  static constexpr std::array<std::string_view, 6> ws_ops{"submit",  "cancel", "watch",
                                                          "unwatch", "gather", "invalid"};
  static constexpr std::array<std::string_view, 5> ws_types{"reply", "job", "gather", "gather_done",
                                                            "error"};
  static constexpr std::array<std::string_view, 6> ws_close_reasons{
      "client", "slow_consumer", "too_big", "idle", "shutdown", "error"};
  void ws_opened();
  void ws_closed(std::string_view reason);
  void ws_received(std::string_view op);
  void ws_sent(std::string_view type);

  // The configured limits, as gatherd_limit{name} (alerts compare usage with them).
  void set_limit(const std::string& name, double value);

  // For metric groups that keep their own families (fetch_metrics).
  prometheus::Registry& registry() { return *registry_; }

  // Values read at scrape time (gauges owned by someone else).
  void on_scrape(std::function<void(metrics&)> refresh) { refresh_ = std::move(refresh); }
  void set_jobs(std::size_t queued, std::size_t running, std::size_t retained);
  void set_job_bytes(std::size_t bytes) { job_bytes_.Set(static_cast<double>(bytes)); }
  void set_log_dropped(std::size_t dropped);

  // The exposition text of every metric.
  std::string scrape();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Gauge& connections_open_;
  prometheus::Family<prometheus::Counter>& connections_rejected_;
  prometheus::Counter& rejected_full_;
  prometheus::Counter& rejected_per_client_;
  prometheus::Family<prometheus::Counter>& jobs_submitted_;
  prometheus::Family<prometheus::Counter>& jobs_finished_;
  prometheus::Family<prometheus::Counter>& jobs_rejected_;
  prometheus::Family<prometheus::Counter>& job_retries_;
  prometheus::Family<prometheus::Histogram>& job_seconds_;
  prometheus::Histogram& queue_wait_;
  prometheus::Gauge& jobs_queued_;
  prometheus::Gauge& jobs_running_;
  prometheus::Gauge& jobs_retained_;
  prometheus::Counter& log_dropped_;
  prometheus::Family<prometheus::Counter>& gathers_;
  prometheus::Histogram& gather_seconds_;
  prometheus::Histogram& acquire_wait_;
  std::array<prometheus::Gauge*, std::size(core::all_primitive_types)> primitives_by_type_{};
  prometheus::Gauge& primitive_waiters_;
  prometheus::Counter& lease_expiries_;
  prometheus::Gauge& queue_items_;
  double lease_expiries_seen_ = 0;
  prometheus::Gauge& queue_bytes_;
  prometheus::Gauge& job_bytes_;
  std::array<prometheus::Counter*, std::size(core::all_primitive_types)> expired_by_type_{};
  std::array<double, std::size(core::all_primitive_types)> expired_seen_{};
  prometheus::Family<prometheus::Gauge>& limits_;
  prometheus::Gauge& ws_open_;
  prometheus::Counter& ws_accepted_;
  std::array<prometheus::Counter*, ws_ops.size()> ws_received_{};
  std::array<prometheus::Counter*, ws_types.size()> ws_sent_{};
  std::array<prometheus::Counter*, ws_close_reasons.size()> ws_closed_{};
  std::shared_ptr<prometheus::Collectable> process_;
  std::function<void(metrics&)> refresh_;
  std::mutex scrape_mutex_;
  double log_dropped_seen_ = 0;
  // Label sets known in advance, looked up once.
  static constexpr std::size_t kinds = std::size(core::all_job_kinds);
  static constexpr std::size_t states = std::size(core::all_job_states);
  std::array<prometheus::Counter*, kinds> submitted_by_kind_{};
  std::array<prometheus::Counter*, kinds> retries_by_kind_{};
  std::array<prometheus::Histogram*, kinds> seconds_by_kind_{};
  std::array<std::array<prometheus::Counter*, states>, kinds> finished_by_kind_state_{};
};

}  // namespace gatherd::service
