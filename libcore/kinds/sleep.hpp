// `sleep`: simulated I/O, with scripted failures and an awaited cleanup on cancellation.
#pragma once

#include "libcore/asio.hpp"
#include "libcore/job.hpp"
#include "libcore/kinds/attempt_context.hpp"

namespace gatherd::core {

awaitable<json> run_sleep(const sleep_params& params, attempt_context ctx);

// How attempt `attempt` of a sleep ends once its time has passed without cancellation: its
// result, or a job_failure. (Shared by run_sleep and the engine's plain-sleep fast path.)
json sleep_result(const sleep_params& params, int attempt);

}  // namespace gatherd::core
