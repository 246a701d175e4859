// The typed gather handlers that REST (POST /v1/gather) and the WebSocket `gather` op share.
// A streamed gather (as_completed) reports each job as it is done and then the summary to a
// sink: REST writes NDJSON lines, the WebSocket protocol `gather` and `gather_done` messages.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "libcore/asio.hpp"
#include "libcore/gather.hpp"

namespace gatherd::service {

struct api_context;

struct gather_request {
  std::vector<core::gather_entry> entries;
  core::gather_options options;
};

// A gather body: {"jobs": [id or spec, ...] (1 to --max-gather), "return_when", ...}. A large
// one's entries are read on two I/O threads at once.
core::awaitable<gather_request> read_gather(api_context& api, const nlohmann::json& body);

// Where a streamed gather's results go, in order: job_done per job as each is done, then
// finished once. Returning false means the receiver is gone: the gather is abandoned.
class gather_sink {
 public:
  virtual ~gather_sink() = default;
  virtual core::awaitable<bool> job_done(const core::job_snapshot& job) = 0;
  virtual core::awaitable<bool> finished(const core::gather_result& result) = 0;
};

class gather_stream;  // api/gather.cpp

// Starts a streamed gather and returns once it has started: refusals (404 for an unknown id,
// 429 when its specs do not fit) are thrown, before anything could be written. Then `pump`
// passes its results on; a gather whose pump is never run, or stops early, is abandoned.
core::awaitable<std::shared_ptr<gather_stream>> start_gather_stream(api_context& api,
                                                                    gather_request request,
                                                                    std::string request_id);
core::awaitable<void> pump(std::shared_ptr<gather_stream> stream, gather_sink& sink);

}  // namespace gatherd::service
