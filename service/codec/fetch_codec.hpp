// JSON -> fetch requests and batches (strictly validated, like job specs), for the `fetch`
// job kind's params and for POST /v1/fetch.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "libcore/fetch/batch.hpp"
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

// A result: {"attempts","body","body_bytes","elapsed_ms","error","headers","status",
// "truncated","url"} (keys in this order, plus "index" for NDJSON lines). Header names are
// lower-cased; repeated headers are joined with ", "; "status", "headers" and "body" are null
// without a response. A body that is not UTF-8 has its invalid bytes replaced (U+FFFD).
void write_fetch_result(fmt::memory_buffer& out, const core::fetch::fetch_result& r,
                        std::optional<std::size_t> index = {});
// {"elapsed_ms","failed","ok","throttled_ms"}
void write_fetch_summary(fmt::memory_buffer& out, const core::fetch::batch_summary& s);
// The answer of POST /v1/fetch and a fetch_batch job's result: {"results": [...],
// "summary": {...}}.
void write_fetch_batch(fmt::memory_buffer& out, const core::fetch::batch_outcome& outcome);
std::string encode_fetch_batch(const core::fetch::batch_outcome& outcome);
// The NDJSON lines of a streamed batch: one result with its index, then {"summary": {...}}.
std::string encode_fetch_line(const core::fetch::fetch_result& r, std::size_t index);
std::string encode_fetch_summary_line(const core::fetch::batch_summary& s);

}  // namespace gatherd::service
