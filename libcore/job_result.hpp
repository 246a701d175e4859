// What a succeeded job returns, typed: a JSON value (sleep, compute), one fetched URL (fetch)
// or a whole batch (fetch_batch). libcore owns no wire format: the service encodes each
// (service/codec/job_codec, fetch_codec).
#pragma once

#include <variant>

#include "libcore/fetch/batch.hpp"
#include "libcore/fetch/fetch_result.hpp"
#include "libcore/job.hpp"

namespace gatherd::core {

struct job_result {
  std::variant<json, fetch::fetch_result, fetch::batch_outcome> value;
};

}  // namespace gatherd::core
