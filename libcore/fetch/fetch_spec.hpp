// What clients ask of fetch: one request (the `fetch` job kind) or a batch (`POST /v1/fetch`,
// and the `fetch_batch` job kind behind `async: true`).
#pragma once

#include <optional>
#include <vector>

#include "libcore/fetch/http_client.hpp"
#include "libcore/rate_limit/gcra.hpp"
#include "libcore/retry_policy.hpp"

namespace gatherd::core::fetch {

struct fetch_params {
  http_request request;
};

struct batch_params {
  std::vector<http_request> requests;  // each with its timeout (per attempt) and body cap
  std::size_t concurrency = 16;        // in flight at once
  std::optional<rate> limit;           // the batch's own rate, on top of the server's host limits
  bool per_host = true;                // one limiter per host:port, or one for the whole batch
  retry_policy retry;                  // one attempt unless asked
  std::optional<millis> deadline;      // the whole batch, from its start
};

}  // namespace gatherd::core::fetch
