// A fetch batch (POST /v1/fetch): up to `concurrency` requests in flight, each waiting for its
// rate tokens and retried as asked; one failed URL never fails the batch. Runs on the caller's
// executor (one thread), results in input order; `progress` hears each as it completes.
#pragma once

#include <functional>

#include "libcore/fetch/fetcher.hpp"

namespace gatherd::core::fetch {

using batch_progress = std::function<void(std::size_t index, const fetch_result& result)>;

struct batch_outcome {
  std::vector<fetch_result> results;  // input order
  batch_summary summary;
};

// Requests still unfinished when the deadline passes are stopped and get error `deadline`.
// Cancelling the caller stops every request and throws operation_aborted.
awaitable<batch_outcome> run_batch(fetcher& f, batch_params params, batch_progress progress = {});

// {"results": [...], "summary": {...}}
json to_json(const batch_outcome& outcome);

}  // namespace gatherd::core::fetch
