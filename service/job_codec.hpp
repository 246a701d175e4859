// The one JSON codec for jobs: request JSON -> job_spec (strictly validated), job -> JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "libcore/job.hpp"

namespace gatherd::service {

struct spec_limits {
  core::millis max_retention{86400000};
};

// `path` prefixes field names in error messages (e.g. "jobs[2]").
core::job_spec parse_job_spec(const nlohmann::json& body, const spec_limits& limits,
                              const std::string& path = "");

nlohmann::json encode_job(const core::job_snapshot& job);

// RFC 3339 UTC with milliseconds: 2026-11-22T01:02:03.456Z
std::string format_timestamp(core::wall_clock::time_point t);

}  // namespace gatherd::service
