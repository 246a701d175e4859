// The outcome of one fetched URL, as API.md shows it in a batch's `results` and as a `fetch`
// job's result.
#pragma once

#include <optional>
#include <string>

#include "libcore/fetch/http_client.hpp"
#include "libcore/job.hpp"

namespace gatherd::core::fetch {

struct fetch_result {
  std::string url;
  unsigned status = 0;  // 0: no response (see error)
  header_list headers;
  std::string body;
  bool truncated = false;
  int attempts = 0;
  millis elapsed{0};
  millis throttled{0};  // waited for rate tokens, over all attempts
  std::optional<job_error> error;
};

// {"url","status","headers","body","body_bytes","truncated","attempts","elapsed_ms","error"},
// plus "index" when given (NDJSON lines). Header names are lower-cased; repeated headers are
// joined with ", ". A body that is not UTF-8 has its invalid bytes replaced (U+FFFD).
json to_json(const fetch_result& r, std::optional<std::size_t> index = {});

struct batch_summary {
  std::size_t ok = 0;      // results without an error
  std::size_t failed = 0;  // results with one
  millis elapsed{0};
  millis throttled{0};  // the sum over results
};

json to_json(const batch_summary& s);

}  // namespace gatherd::core::fetch
