// JSON -> fetch requests and batches (strictly validated, like job specs), for the `fetch`
// job kind's params and for POST /v1/fetch.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "libcore/fetch/fetch_spec.hpp"

namespace gatherd::service {

struct fetch_limits {
  core::millis default_timeout{10000};
  std::size_t default_body_bytes = 1 << 20;
  std::size_t max_body_bytes = 10 << 20;
  int max_redirects = 10;
  std::size_t max_requests = 10000;
  std::size_t max_concurrency = 256;
};

// The `params` of a `fetch` job: {"url", "method", "headers", "body", "max_body_bytes",
// "max_redirects"}. `timeout` is the attempt's (the job's attempt_timeout_ms, or the default).
core::fetch::http_request parse_fetch_params(const nlohmann::json& params, const std::string& path,
                                             const fetch_limits& limits,
                                             std::optional<core::millis> timeout);

struct fetch_batch_request {
  core::fetch::batch_params batch;
  bool async = false;
};

// The body of POST /v1/fetch.
fetch_batch_request parse_fetch_batch(const nlohmann::json& body, const fetch_limits& limits);

}  // namespace gatherd::service
