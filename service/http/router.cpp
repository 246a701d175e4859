#include "service/http/router.hpp"

#include <boost/url/parse.hpp>
#include <stdexcept>

namespace gatherd::service {

void route_table::add(std::string method, std::string pattern, handler h, waits may_wait) {
  for (const auto& r : routes_) {
    if (r.method == method && r.pattern == pattern) {
      throw std::logic_error("route added twice: " + method + " " + pattern);
    }
  }
  routes_.push_back({std::move(method), std::move(pattern), h, may_wait});
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

routing route_table::find(std::string_view method, std::string_view target) const {
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
  for (const auto& candidate : routes_) {
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
