// The typed job handlers that REST (api/jobs.cpp) and the WebSocket protocol share: each
// answers exactly what its REST route answers, from values already parsed.
#pragma once

#include <string>

#include "libcore/asio.hpp"
#include "libcore/job.hpp"
#include "service/http/http_message.hpp"

namespace gatherd::service {

struct api_context;

// 202 with the job and its Location (200 for an idempotent replay).
core::awaitable<http_response> submit_job(api_context& api, core::job_spec spec);
// 200 with the job once it is finished or `wait` has passed.
core::awaitable<http_response> get_job(api_context& api, core::job_id id, core::millis wait);
// 202 with the job; `reason` becomes a cancelled job's error message.
core::awaitable<http_response> cancel_job(api_context& api, core::job_id id, std::string reason);

// A job id from a path or a message; a malformed one cannot name a job: the same 404 as an
// unknown one.
core::job_id job_id_or_404(const std::string& text);

}  // namespace gatherd::service
