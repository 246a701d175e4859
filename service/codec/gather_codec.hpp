// POST /v1/gather (and the WebSocket `gather` op): the request body in, the answer's summary
// fields out.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "libcore/gather.hpp"
#include "service/codec/job_codec.hpp"

namespace gatherd::service {

// The options of a gather body (return_when, return_exceptions, cancel_on_error,
// cancel_pending, timeout_ms), read with `r` (an object_reader over the body).
class object_reader;
core::gather_options parse_gather_options(object_reader& r);

// jobs[i]: an existing job's id (a malformed one: 404, as unknown ones are) or an inline spec.
core::gather_entry parse_gather_entry(const nlohmann::json& entry, std::size_t i,
                                      const spec_limits& limits);

// Everything of the answer but `jobs`: "outcome", "elapsed_ms", "done", "pending" and
// "first_error", comma separated without braces: the tail of the JSON answer, the NDJSON
// summary line's object and the WebSocket `gather_done` message share them.
void write_gather_summary_fields(fmt::memory_buffer& out, const core::gather_result& result);

}  // namespace gatherd::service
