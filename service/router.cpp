#include "service/router.hpp"

#include <boost/url/parse.hpp>

namespace gatherd::service {

const std::vector<route>& route_table() {
  static const std::vector<route> table = {
      {"GET", "/healthz", endpoint::healthz},
      {"GET", "/readyz", endpoint::readyz},
      {"GET", "/metrics", endpoint::metrics},
      {"GET", "/openapi.yaml", endpoint::openapi},
      {"POST", "/v1/jobs", endpoint::submit_job},
      {"GET", "/v1/jobs", endpoint::list_jobs},
      {"POST", "/v1/jobs/batch", endpoint::submit_batch},
      {"GET", "/v1/jobs/{id}", endpoint::get_job, true},
      {"DELETE", "/v1/jobs/{id}", endpoint::delete_job},
      {"POST", "/v1/jobs/{id}/cancel", endpoint::cancel_job},
      {"POST", "/v1/gather", endpoint::gather, true},
      {"POST", "/v1/fetch", endpoint::fetch, true},
      {"GET", "/v1/ws", endpoint::websocket},
      {"PUT", "/v1/semaphores/{name}", endpoint::put_semaphore},
      {"GET", "/v1/semaphores/{name}", endpoint::get_semaphore},
      {"DELETE", "/v1/semaphores/{name}", endpoint::delete_semaphore},
      {"POST", "/v1/semaphores/{name}/acquire", endpoint::acquire_semaphore, true},
      {"POST", "/v1/semaphores/{name}/release", endpoint::release_semaphore},
      {"POST", "/v1/semaphores/{name}/keepalive", endpoint::keepalive_semaphore},
      {"PUT", "/v1/locks/{name}", endpoint::put_lock},
      {"GET", "/v1/locks/{name}", endpoint::get_lock},
      {"DELETE", "/v1/locks/{name}", endpoint::delete_lock},
      {"POST", "/v1/locks/{name}/acquire", endpoint::acquire_lock, true},
      {"POST", "/v1/locks/{name}/release", endpoint::release_lock},
      {"POST", "/v1/locks/{name}/keepalive", endpoint::keepalive_lock},
      {"PUT", "/v1/events/{name}", endpoint::put_event},
      {"GET", "/v1/events/{name}", endpoint::wait_event, true},
      {"DELETE", "/v1/events/{name}", endpoint::delete_event},
      {"POST", "/v1/events/{name}/set", endpoint::set_event},
      {"POST", "/v1/events/{name}/clear", endpoint::clear_event},
      {"PUT", "/v1/barriers/{name}", endpoint::put_barrier},
      {"GET", "/v1/barriers/{name}", endpoint::get_barrier},
      {"DELETE", "/v1/barriers/{name}", endpoint::delete_barrier},
      {"POST", "/v1/barriers/{name}/wait", endpoint::wait_barrier, true},
      {"PUT", "/v1/queues/{name}", endpoint::put_queue},
      {"GET", "/v1/queues/{name}", endpoint::get_queue},
      {"DELETE", "/v1/queues/{name}", endpoint::delete_queue},
      {"POST", "/v1/queues/{name}/put", endpoint::queue_put, true},
      {"POST", "/v1/queues/{name}/get", endpoint::queue_get, true},
      {"POST", "/v1/queues/{name}/done", endpoint::queue_done},
      {"GET", "/v1/queues/{name}/join", endpoint::queue_join, true},
  };
  return table;
}

namespace {

// Matches `segments` against a pattern; fills `params` with the brace segments.
bool matches(std::string_view pattern, const std::vector<std::string>& segments,
             std::vector<std::string>& params) {
  params.clear();
  std::size_t i = 0;
  std::size_t pos = 1;  // skip the leading '/'
  while (pos <= pattern.size()) {
    std::size_t end = pattern.find('/', pos);
    if (end == std::string_view::npos) end = pattern.size();
    std::string_view piece = pattern.substr(pos, end - pos);
    if (i >= segments.size()) return false;
    if (piece.starts_with('{')) {
      if (segments[i].empty()) return false;
      params.push_back(segments[i]);
    } else if (piece != segments[i]) {
      return false;
    }
    ++i;
    pos = end + 1;
  }
  return i == segments.size();
}

}  // namespace

routing find_route(std::string_view method, std::string_view target) {
  routing r;
  auto url = boost::urls::parse_origin_form(target);
  if (!url) {
    r.bad_target = true;
    return r;
  }
  std::vector<std::string> segments;
  for (auto segment : url->segments()) segments.push_back(segment);
  if (segments.empty()) segments.emplace_back();  // "/" is one empty segment
  for (auto param : url->params()) r.match.query.emplace_back(param.key, param.value);

  // A literal path ("/v1/jobs/batch") shadows a pattern that would also match ("/v1/jobs/{id}").
  std::vector<std::pair<const route*, std::vector<std::string>>> candidates;
  bool literal = false;
  std::vector<std::string> params;
  for (const auto& candidate : route_table()) {
    if (!matches(candidate.pattern, segments, params)) continue;
    const bool is_literal = candidate.pattern.find('{') == std::string::npos;
    if (is_literal && !literal) candidates.clear();
    if (is_literal || !literal) candidates.emplace_back(&candidate, params);
    literal = literal || is_literal;
  }
  for (auto& [candidate, values] : candidates) {
    if (candidate->method == method) {
      r.matched = candidate;
      r.match.route = candidate->pattern;
      r.match.path_params = std::move(values);
      return r;
    }
  }
  for (auto& [candidate, values] : candidates) {
    if (!r.allow.empty()) r.allow += ", ";
    r.allow += candidate->method;
  }
  return r;
}

}  // namespace gatherd::service
