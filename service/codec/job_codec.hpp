// The one JSON codec for jobs: request JSON -> job_spec (strictly validated), job -> JSON.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "libcore/engine.hpp"
#include "libcore/job.hpp"
#include "libcore/job_registry.hpp"
#include "service/codec/fetch_codec.hpp"

namespace gatherd::service {

class object_reader;

struct spec_limits {
  core::millis max_retention{86400000};
  fetch_limits fetch;
};

// A `retry` object; missing fields take retry_policy::with_defaults().
core::retry_policy parse_retry(object_reader& r);

// `path` prefixes field names in error messages (e.g. "jobs[2]").
core::job_spec parse_job_spec(const nlohmann::json& body, const spec_limits& limits,
                              const std::string& path = "");

// RFC 3339 UTC with milliseconds (2026-11-22T01:02:03.456Z), as every timestamp on the wire.
void write_timestamp(fmt::memory_buffer& out, core::wall_clock::time_point t);

// The job object of proto/openapi.yaml, as JSON text (written directly: this is on every hot path).
std::string encode_job(const core::job_snapshot& job);
void write_job(fmt::memory_buffer& out, const core::job_snapshot& job);

// POST /v1/jobs/batch: {"jobs": [spec, ...]} (1 to `max_batch` specs).
std::vector<core::job_spec> parse_job_batch(const nlohmann::json& body, const spec_limits& limits,
                                            std::size_t max_batch);
// Its answer: {"jobs": [job, ...]}.
std::string encode_submissions(const std::vector<core::submission>& submitted);

// GET /v1/jobs: the query (state, kind, label key:value repeated, limit, after) and its page
// {"jobs": [job, ...], "next": cursor or null}.
core::job_query parse_job_query(const std::vector<std::pair<std::string, std::string>>& query);
std::string encode_job_page(const core::job_page& page);

}  // namespace gatherd::service
