// POST /v1/gather: fan-in over existing jobs and inline specs.
#include "libcore/gather.hpp"

#include "service/http_api.hpp"
#include "service/json_reader.hpp"
#include "service/json_text.hpp"
#include "service/log.hpp"
#include "service/problem.hpp"
#include "service/query_reader.hpp"

namespace gatherd::service {

namespace {

core::return_when parse_return_when(const std::string& text) {
  if (text == "all_completed") return core::return_when::all_completed;
  if (text == "first_completed") return core::return_when::first_completed;
  if (text == "first_exception") return core::return_when::first_exception;
  throw invalid_request(
      "field 'return_when' must be one of all_completed, first_completed, first_exception");
}

void write_indices(fmt::memory_buffer& out, const std::vector<std::size_t>& indices) {
  out.push_back('[');
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (i) out.push_back(',');
    fmt::format_to(std::back_inserter(out), "{}", indices[i]);
  }
  out.push_back(']');
}

}  // namespace

core::awaitable<http_response> http_api::gather(const http_request& req, const route_match& match) {
  query_reader(match.query).finish();
  require_json_body(req);
  const json body = parse_json_body(req.body);
  object_reader r(body, "",
                  {"jobs", "return_when", "return_exceptions", "cancel_on_error", "cancel_pending",
                   "timeout_ms"});
  const json* jobs = r.raw("jobs");
  if (!jobs || !jobs->is_array() || jobs->empty() || jobs->size() > config_.max_gather) {
    throw invalid_request("field 'jobs' must be an array of 1 to " +
                          std::to_string(config_.max_gather) + " job ids or job specs");
  }
  std::vector<core::gather_entry> entries;
  entries.reserve(jobs->size());
  for (std::size_t i = 0; i < jobs->size(); ++i) {
    const json& entry = (*jobs)[i];
    const std::string path = "jobs[" + std::to_string(i) + "]";
    if (entry.is_string()) {
      auto id = core::job_id::parse(entry.get_ref<const std::string&>());
      if (!id) {
        throw request_error(404, "not_found",
                            "no job " + entry.get<std::string>() + " (" + path + ")");
      }
      entries.emplace_back(*id);
    } else if (entry.is_object()) {
      entries.emplace_back(parse_job_spec(entry, limits_, path));
    } else {
      throw invalid_request("field '" + path +
                            "' must be a job id (string) or a job spec (object)");
    }
  }
  core::gather_options options;
  if (auto when = r.string("return_when", 32)) options.when = parse_return_when(*when);
  options.return_exceptions = r.boolean("return_exceptions").value_or(true);
  options.cancel_on_error = r.boolean("cancel_on_error").value_or(false);
  options.cancel_pending = r.boolean("cancel_pending").value_or(false);
  options.timeout = r.duration("timeout_ms", 86'400'000);

  const std::size_t count = entries.size();
  const core::gather_result result = co_await engine_.gather(std::move(entries), options);
  const auto outcome = core::to_string(result.outcome);
  metrics_.gather_done(outcome, std::chrono::duration<double>(result.elapsed).count());
  log::info("gather.done")
      .add("request_id", req.request_id)
      .add("outcome", outcome)
      .add("jobs", count)
      .add("done", result.done.size())
      .add("pending", result.pending.size())
      .add("elapsed_ms", static_cast<std::int64_t>(result.elapsed.count()));

  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), R"({{"outcome":"{}","elapsed_ms":{},"jobs":[)",
                 core::to_string(result.outcome), result.elapsed.count());
  for (std::size_t i = 0; i < result.jobs.size(); ++i) {
    if (i) out.push_back(',');
    write_job(out, result.jobs[i]);
  }
  out.append(std::string_view(R"(],"done":)"));
  write_indices(out, result.done);
  out.append(std::string_view(R"(,"pending":)"));
  write_indices(out, result.pending);
  out.append(std::string_view(R"(,"first_error":)"));
  if (const auto& e = result.first_error) {
    fmt::format_to(std::back_inserter(out), R"({{"index":{},"id":"{}","error":{{"type":)", e->index,
                   e->id.to_string());
    append_json_string(out, e->error.type);
    out.append(std::string_view(R"(,"message":)"));
    append_json_string(out, e->error.message);
    out.append(std::string_view("}}"));
  } else {
    out.append(std::string_view("null"));
  }
  out.push_back('}');
  http_response res;
  res.body = fmt::to_string(out);
  co_return res;
}

}  // namespace gatherd::service
