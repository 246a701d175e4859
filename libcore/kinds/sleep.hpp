// `sleep`: simulated I/O, with scripted failures and an awaited cleanup on cancellation.
#pragma once

#include "libcore/asio.hpp"
#include "libcore/job.hpp"
#include "libcore/kinds/attempt_context.hpp"

namespace gatherd::core {

awaitable<json> run_sleep(const sleep_params& params, attempt_context ctx);

}  // namespace gatherd::core
