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
      {"GET", "/v1/ws", endpoint::websocket},
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
