// Metrics of outbound fetch: attempts by outcome class and their latency, retries, time spent
// throttled, and the client's connections and egress refusals. Label values come from fixed
// lists: never a URL or a host.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <mutex>
#include <string_view>

#include "libcore/fetch/fetcher.hpp"
#include "libcore/fetch/http_client.hpp"

namespace gatherd::service {

class fetch_metrics final : public core::fetch::fetch_observer {
 public:
  static constexpr std::array<std::string_view, 15> outcomes{
      "1xx",  "2xx",     "3xx",      "4xx",       "5xx",          "connect",     "dns",
      "tls",  "timeout", "protocol", "redirects", "fetch_denied", "invalid_url", "invalid_request",
      "other"};

  explicit fetch_metrics(prometheus::Registry& registry);

  // fetch_observer (any thread)
  void attempt_done(std::string_view outcome, double seconds) override;
  void retrying() override { retries_.Increment(); }
  void throttled(double seconds) override { throttled_.Increment(seconds); }

  enum class batch_mode { json, stream, async };
  void batch_started(batch_mode mode) { batches_[static_cast<std::size_t>(mode)]->Increment(); }

  // At scrape time, from the client's own counters.
  void set_client(const core::fetch::http_client_stats& stats);

 private:
  std::array<prometheus::Counter*, outcomes.size()> requests_{};
  prometheus::Histogram& seconds_;
  prometheus::Counter& retries_;
  prometheus::Counter& throttled_;
  std::array<prometheus::Counter*, 3> batches_{};
  prometheus::Gauge& connections_open_;
  prometheus::Counter& connections_opened_;
  prometheus::Counter& connections_reused_;
  prometheus::Counter& egress_denied_;
  std::mutex seen_mutex_;
  double opened_seen_ = 0, reused_seen_ = 0, denied_seen_ = 0;
};

}  // namespace gatherd::service
