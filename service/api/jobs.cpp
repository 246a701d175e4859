// /v1/jobs: submit, batch, list, get (long-poll), cancel, delete.
#include "service/api/jobs.hpp"

#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

constexpr long long max_wait_ms = 60000;

http_response job_accepted(const core::submission& s) {
  http_response res = text_response(s.created ? 202 : 200, encode_job(s.job));
  res.headers.emplace_back("Location", "/v1/jobs/" + s.job.id.to_string());
  return res;
}

core::awaitable<http_response> post_job(api_context& api, const http_request& req,
                                        const route_match&) {
  require_json_body(req);
  co_return co_await submit_job(api, parse_job_spec(parse_json_body(req.body), api.limits));
}

core::awaitable<http_response> post_batch(api_context& api, const http_request& req,
                                          const route_match&) {
  require_json_body(req);
  auto specs = parse_job_batch(parse_json_body(req.body), api.limits, api.settings.max_batch);
  const auto submitted = co_await api.engine.submit_batch(std::move(specs));
  co_return text_response(202, encode_submissions(submitted));
}

core::awaitable<http_response> list_jobs(api_context& api, const http_request&,
                                         const route_match& match) {
  const auto page = co_await api.engine.list(parse_job_query(match.query));
  co_return text_response(200, encode_job_page(page));
}

core::awaitable<http_response> read_job(api_context& api, const http_request&,
                                        const route_match& match) {
  query_reader q(match.query);
  const auto wait = q.integer("wait_ms", 0, max_wait_ms).value_or(0);
  q.finish();
  co_return co_await get_job(api, job_id_or_404(match.path_params.at(0)), core::millis{wait});
}

core::awaitable<http_response> post_cancel(api_context& api, const http_request& req,
                                           const route_match& match) {
  query_reader(match.query).finish();
  std::string reason;
  if (!req.body.empty()) {
    require_json_body(req);
    const json body = parse_json_body(req.body);
    object_reader r(body, "", {"reason"});
    reason = r.string("reason", 1024).value_or("");
  }
  co_return co_await cancel_job(api, job_id_or_404(match.path_params.at(0)), std::move(reason));
}

core::awaitable<http_response> delete_job(api_context& api, const http_request&,
                                          const route_match& match) {
  query_reader(match.query).finish();
  co_await api.engine.remove(job_id_or_404(match.path_params.at(0)));
  co_return no_content();
}

}  // namespace

core::job_id job_id_or_404(const std::string& text) {
  auto id = core::job_id::parse(text);
  if (!id) throw request_error(404, "not_found", "no job " + text);
  return *id;
}

core::awaitable<http_response> submit_job(api_context& api, core::job_spec spec) {
  co_return job_accepted(co_await api.engine.submit(std::move(spec)));
}

core::awaitable<http_response> get_job(api_context& api, core::job_id id, core::millis wait) {
  const auto job = co_await api.engine.get(id, wait);
  co_return text_response(200, encode_job(job));
}

core::awaitable<http_response> cancel_job(api_context& api, core::job_id id, std::string reason) {
  const auto job = co_await api.engine.cancel(id, std::move(reason));
  co_return text_response(202, encode_job(job));
}

void add_job_routes(route_table& t) {
  t.add("POST", "/v1/jobs", post_job);
  t.add("GET", "/v1/jobs", list_jobs);
  t.add("POST", "/v1/jobs/batch", post_batch);
  t.add("GET", "/v1/jobs/{id}", read_job, waits::yes);
  t.add("DELETE", "/v1/jobs/{id}", delete_job);
  t.add("POST", "/v1/jobs/{id}/cancel", post_cancel);
}

}  // namespace gatherd::service
