// The standard process_* metrics (memory, CPU, fds, start time), read from /proc at scrape.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace gatherd::service {

class process_collector : public prometheus::Collectable {
 public:
  process_collector();
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  double start_time_seconds_;
};

}  // namespace gatherd::service
