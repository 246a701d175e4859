// `fetch` (one outbound request) and `fetch_batch` (a whole POST /v1/fetch batch) as job kinds.
// Both move their work off the engine strand onto an I/O executor.
#pragma once

#include "libcore/asio.hpp"
#include "libcore/fetch/batch.hpp"
#include "libcore/job.hpp"
#include "libcore/kinds/attempt_context.hpp"

namespace gatherd::core {

// One attempt. A 429 or 5xx answer fails the attempt (type `http_status`, honouring Retry-After)
// while attempts remain; the last one is the result, like any other status.
awaitable<fetch::fetch_result> run_fetch(const fetch_params& params, attempt_context ctx);

// The batch's own retries apply per URL; the job itself makes one attempt.
awaitable<fetch::batch_outcome> run_fetch_batch(const fetch_batch_params& params,
                                                attempt_context ctx);

}  // namespace gatherd::core
