// Fan-in over jobs: asyncio.gather / asyncio.wait / TaskGroup semantics, driven by job
// completion (no polling). What to wait for and what the wait found.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "libcore/job.hpp"

namespace gatherd::core {

// An existing job by id, or a spec to submit with the gather.
using gather_entry = std::variant<job_id, job_spec>;

enum class return_when : std::uint8_t { all_completed, first_completed, first_exception };

struct gather_options {
  return_when when = return_when::all_completed;
  bool return_exceptions = true;  // false with all_completed: the first failure ends the wait
  bool cancel_on_error = false;   // the first failure cancels the others (TaskGroup)
  bool cancel_pending = false;    // cancel what is still pending when the wait ends early
  std::optional<millis> timeout;
};

struct job_record;

// Hooks called on the engine strand while a gather runs (for as_completed streaming); they must
// be quick and must not block. `started`: every id was found and every inline spec admitted,
// nothing can be refused any more. `done`: a job is done (input index, its record), in
// completion order. The record is final: nothing its snapshot() reads changes any more, so it
// may be kept and read (snapshot()) on any thread.
struct gather_progress {
  std::function<void()> started;
  std::function<void(std::size_t index, const std::shared_ptr<const job_record>& job)> done;
};

// `abandoned`: the caller stopped waiting (its client went away) before the wait ended; the
// inline jobs it had submitted and that were unfinished are cancelled.
enum class gather_outcome : std::uint8_t { completed, failed, timed_out, abandoned };
std::string_view to_string(gather_outcome o);

struct gather_error {
  std::size_t index = 0;
  job_id id;
  job_error error;
};

struct gather_result {
  gather_outcome outcome = gather_outcome::completed;
  millis elapsed{0};
  std::vector<job_snapshot> jobs;  // input order
  std::vector<std::size_t> done;   // input indices, in completion order (cancelled ones last)
  std::vector<std::size_t> pending;
  // The earliest-finishing failure among `done`, not counting jobs the gather itself cancelled.
  std::optional<gather_error> first_error;
};

}  // namespace gatherd::core
