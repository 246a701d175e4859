// /v1/jobs: submit, batch, list, get (long-poll), cancel, delete.
#include "service/http_api.hpp"
#include "service/json_reader.hpp"
#include "service/problem.hpp"
#include "service/query_reader.hpp"

namespace gatherd::service {

namespace {

constexpr long long max_wait_ms = 60000;
constexpr long long max_page = 1000;

// A malformed id cannot name a job: the same 404 as an unknown one.
core::job_id job_id_of(const route_match& match) {
  auto id = core::job_id::parse(match.path_params.at(0));
  if (!id) throw request_error(404, "not_found", "no job " + match.path_params.at(0));
  return *id;
}

http_response text_response(unsigned status, std::string body) {
  http_response res;
  res.status = status;
  res.body = std::move(body);
  return res;
}

// {"<name>": [job, ...]} (plus whatever `tail` adds before the closing brace)
template <class Jobs, class Project>
std::string job_array(std::string_view name, const Jobs& jobs, Project project,
                      std::string_view tail = {}) {
  fmt::memory_buffer out;
  out.append(std::string_view("{\""));
  out.append(name);
  out.append(std::string_view("\":["));
  bool first = true;
  for (const auto& item : jobs) {
    if (!first) out.push_back(',');
    first = false;
    write_job(out, project(item));
  }
  out.push_back(']');
  out.append(tail);
  out.push_back('}');
  return fmt::to_string(out);
}

}  // namespace

core::awaitable<http_response> http_api::submit_job(const http_request& req) {
  require_json_body(req);
  auto spec = parse_job_spec(parse_json_body(req.body), limits_);
  const auto submitted = co_await engine_.submit(std::move(spec));
  co_return job_accepted(submitted);
}

core::awaitable<http_response> http_api::submit_batch(const http_request& req) {
  require_json_body(req);
  const json body = parse_json_body(req.body);
  object_reader r(body, "", {"jobs"});
  const json* jobs = r.raw("jobs");
  if (!jobs || !jobs->is_array() || jobs->empty() || jobs->size() > config_.max_batch) {
    throw invalid_request("field 'jobs' must be an array of 1 to " +
                          std::to_string(config_.max_batch) + " job specs");
  }
  std::vector<core::job_spec> specs;
  specs.reserve(jobs->size());
  for (std::size_t i = 0; i < jobs->size(); ++i) {
    specs.push_back(parse_job_spec((*jobs)[i], limits_, "jobs[" + std::to_string(i) + "]"));
  }
  auto submitted = co_await engine_.submit_batch(std::move(specs));
  co_return text_response(
      202, job_array("jobs", submitted,
                     [](const core::submission& s) -> const core::job_snapshot& { return s.job; }));
}

core::awaitable<http_response> http_api::list_jobs(const route_match& match) {
  query_reader q(match.query);
  core::job_query query;
  if (auto state = q.single("state")) {
    query.state = core::parse_job_state(*state);
    if (!query.state) {
      throw invalid_request(
          "query parameter 'state' must be one of queued, running, succeeded, "
          "failed, cancelled, timed_out");
    }
  }
  if (auto kind = q.single("kind")) {
    query.kind = core::parse_job_kind(*kind);
    if (!query.kind) throw invalid_request("query parameter 'kind' must be one of sleep, compute");
  }
  for (const auto& label : q.all("label")) {
    auto colon = label.find(':');
    if (colon == std::string::npos || colon == 0) {
      throw invalid_request("query parameter 'label' must be key:value");
    }
    query.labels.emplace_back(label.substr(0, colon), label.substr(colon + 1));
  }
  query.limit = static_cast<std::size_t>(q.integer("limit", 1, max_page).value_or(100));
  if (auto after = q.single("after")) {
    std::uint64_t seq = 0;
    auto [end, ec] = std::from_chars(after->data(), after->data() + after->size(), seq);
    if (ec != std::errc() || end != after->data() + after->size() || seq == 0) {
      throw invalid_request(
          "query parameter 'after' must be a cursor from a previous page's 'next'");
    }
    query.before_seq = seq;
  }
  q.finish();
  auto page = co_await engine_.list(std::move(query));
  const std::string next =
      page.next ? ",\"next\":\"" + std::to_string(*page.next) + "\"" : ",\"next\":null";
  co_return text_response(
      200, job_array(
               "jobs", page.jobs,
               [](const core::job_snapshot& j) -> const core::job_snapshot& { return j; }, next));
}

core::awaitable<http_response> http_api::get_job(const route_match& match) {
  query_reader q(match.query);
  const auto wait = q.integer("wait_ms", 0, max_wait_ms).value_or(0);
  q.finish();
  auto job = co_await engine_.get(job_id_of(match), core::millis{wait});
  co_return text_response(200, encode_job(job));
}

core::awaitable<http_response> http_api::cancel_job(const http_request& req,
                                                    const route_match& match) {
  query_reader(match.query).finish();
  std::string reason;
  if (!req.body.empty()) {
    require_json_body(req);
    const json body = parse_json_body(req.body);
    object_reader r(body, "", {"reason"});
    reason = r.string("reason", 1024).value_or("");
  }
  auto job = co_await engine_.cancel(job_id_of(match), std::move(reason));
  co_return text_response(202, encode_job(job));
}

core::awaitable<http_response> http_api::delete_job(const route_match& match) {
  query_reader(match.query).finish();
  co_await engine_.remove(job_id_of(match));
  http_response res;
  res.status = 204;
  res.content_type.clear();
  co_return res;
}

}  // namespace gatherd::service
