// The outcome of one fetched URL: an entry of a batch's `results` and a `fetch` job's result
// (encoded by service/codec/fetch_codec).
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


struct batch_summary {
  std::size_t ok = 0;      // results without an error
  std::size_t failed = 0;  // results with one
  millis elapsed{0};
  millis throttled{0};  // the sum over results
};

}  // namespace gatherd::core::fetch
