#include "libcore/job.hpp"

#include <array>

namespace gatherd::core {

namespace {
constexpr std::array<std::string_view, 6> state_names = {"queued", "running",   "succeeded",
                                                         "failed", "cancelled", "timed_out"};
constexpr std::array<std::string_view, 4> kind_names = {"sleep", "compute", "fetch",
                                                        "fetch_batch"};
}  // namespace

std::string_view to_string(job_state s) {
  return state_names[static_cast<std::size_t>(s)];
}

std::optional<job_state> parse_job_state(std::string_view s) {
  for (std::size_t i = 0; i < state_names.size(); ++i)
    if (state_names[i] == s) return static_cast<job_state>(i);
  return std::nullopt;
}

job_outcome cancelled_outcome(const std::string& reason) {
  return {job_state::cancelled, nullptr,
          job_error{"cancelled", reason.empty() ? "the job was cancelled" : reason}};
}

std::string_view to_string(job_kind k) {
  return kind_names[static_cast<std::size_t>(k)];
}

std::optional<job_kind> parse_job_kind(std::string_view s) {
  for (std::size_t i = 0; i < kind_names.size(); ++i)
    if (kind_names[i] == s) return static_cast<job_kind>(i);
  return std::nullopt;
}

}  // namespace gatherd::core
