#include "service/codec/gather_codec.hpp"

#include "service/codec/json_reader.hpp"
#include "service/codec/json_text.hpp"
#include "service/http/problem.hpp"

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

core::gather_options parse_gather_options(object_reader& r) {
  core::gather_options options;
  if (auto when = r.string("return_when", 32)) options.when = parse_return_when(*when);
  options.return_exceptions = r.boolean("return_exceptions").value_or(true);
  options.cancel_on_error = r.boolean("cancel_on_error").value_or(false);
  options.cancel_pending = r.boolean("cancel_pending").value_or(false);
  options.timeout = r.duration("timeout_ms", 86'400'000);
  return options;
}

core::gather_entry parse_gather_entry(const nlohmann::json& entry, std::size_t i,
                                      const spec_limits& limits) {
  const std::string path = "jobs[" + std::to_string(i) + "]";
  if (entry.is_string()) {
    auto id = core::job_id::parse(entry.get_ref<const std::string&>());
    if (!id) {
      throw request_error(404, "not_found",
                          "no job " + entry.get<std::string>() + " (" + path + ")");
    }
    return *id;
  }
  if (entry.is_object()) return parse_job_spec(entry, limits, path);
  throw invalid_request("field '" + path + "' must be a job id (string) or a job spec (object)");
}

void write_gather_summary_fields(fmt::memory_buffer& out, const core::gather_result& result) {
  fmt::format_to(std::back_inserter(out), R"("outcome":"{}","elapsed_ms":{},"done":)",
                 core::to_string(result.outcome), result.elapsed.count());
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
}

}  // namespace gatherd::service
