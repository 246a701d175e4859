// A fetch batch (POST /v1/fetch): up to `concurrency` requests in flight, each waiting for its
// rate tokens and retried as asked; one failed URL never fails the batch. The workers are
// spread in groups over the caller's executor and the fetcher's other I/O executors, so that a
// batch is not bound by one thread's CPU; results come in input order. `progress` hears each
// result as it completes, on the thread of the worker that finished it: it must be thread-safe.
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


}  // namespace gatherd::core::fetch
