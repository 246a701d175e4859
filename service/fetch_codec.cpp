#include "service/fetch_codec.hpp"

#include "libcore/fetch/fetcher.hpp"
#include "service/job_codec.hpp"
#include "service/json_reader.hpp"
#include "service/problem.hpp"

namespace gatherd::service {

namespace {

using outbound_request = core::fetch::http_request;

constexpr std::size_t max_url_length = 8192;
constexpr std::size_t max_headers = 64;
constexpr std::int64_t max_duration_ms = 86'400'000;

bool is_token(std::string_view s) {  // RFC 9110 token: method and header names
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos)
      return false;
  }
  return true;
}

bool is_field_value(std::string_view s) {  // no CR, LF or other controls but tab
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

std::string checked_url(const json& value, const std::string& field) {
  if (!value.is_string()) throw invalid_request("field '" + field + "' must be a URL string");
  const std::string& url = value.get_ref<const std::string&>();
  if (url.size() > max_url_length || !core::fetch::origin_of(url)) {
    throw invalid_request("field '" + field + "' must be an absolute http:// or https:// URL of " +
                          "at most " + std::to_string(max_url_length) + " characters");
  }
  return url;
}

core::fetch::header_list parse_headers(const json& value, const std::string& field) {
  if (!value.is_object() || value.size() > max_headers) {
    throw invalid_request("field '" + field + "' must be an object of at most " +
                          std::to_string(max_headers) + " string headers");
  }
  core::fetch::header_list headers;
  for (auto it = value.begin(); it != value.end(); ++it) {
    std::string name = it.key();
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!is_token(name) || !it->is_string() ||
        !is_field_value(it->get_ref<const std::string&>())) {
      throw invalid_request("header '" + it.key() + "' in '" + field +
                            "' must be a valid header name with a string value without "
                            "control characters");
    }
    // These frame the message: gatherd sets them itself.
    if (name == "content-length" || name == "transfer-encoding" || name == "connection") {
      throw invalid_request("header '" + it.key() + "' in '" + field +
                            "' is set by gatherd and may not be given");
    }
    headers.emplace_back(it.key(), it->get<std::string>());
  }
  return headers;
}

// Fields shared by a fetch job's params and a batch's request objects.
void read_request_fields(object_reader& r, outbound_request& request) {
  if (auto method = r.string("method", 32)) {
    if (!is_token(*method)) {
      throw invalid_request("field '" + r.field("method") + "' must be an HTTP method token");
    }
    request.method = std::move(*method);
  }
  if (const json* headers = r.raw("headers")) {
    request.headers = parse_headers(*headers, r.field("headers"));
  }
  if (auto body = r.string("body", std::string::npos)) request.body = std::move(*body);
}

}  // namespace

outbound_request parse_fetch_params(const json& params, const std::string& path,
                                const fetch_limits& limits, std::optional<core::millis> timeout) {
  object_reader r(params, path,
                  {"url", "method", "headers", "body", "max_body_bytes", "max_redirects"});
  outbound_request request;
  const json* url = r.raw("url");
  if (!url) throw invalid_request("field '" + r.field("url") + "' is required");
  request.url = checked_url(*url, r.field("url"));
  read_request_fields(r, request);
  request.max_body_bytes = static_cast<std::size_t>(
      r.integer("max_body_bytes", 0, static_cast<std::int64_t>(limits.max_body_bytes))
          .value_or(static_cast<std::int64_t>(limits.default_body_bytes)));
  request.max_redirects =
      static_cast<int>(r.integer("max_redirects", 0, limits.max_redirects).value_or(0));
  request.timeout = timeout.value_or(limits.default_timeout);
  return request;
}

fetch_batch_request parse_fetch_batch(const json& body, const fetch_limits& limits) {
  object_reader r(body, "",
                  {"requests", "concurrency", "rate", "timeout_ms", "deadline_ms", "retry",
                   "max_body_bytes", "max_redirects", "async"});
  fetch_batch_request out;
  core::fetch::batch_params& batch = out.batch;

  const auto timeout = r.duration("timeout_ms", max_duration_ms).value_or(limits.default_timeout);
  if (timeout.count() == 0) throw invalid_request("field 'timeout_ms' must be positive");
  const auto body_bytes = static_cast<std::size_t>(
      r.integer("max_body_bytes", 0, static_cast<std::int64_t>(limits.max_body_bytes))
          .value_or(static_cast<std::int64_t>(limits.default_body_bytes)));
  const int redirects =
      static_cast<int>(r.integer("max_redirects", 0, limits.max_redirects).value_or(0));

  const json* requests = r.raw("requests");
  if (!requests || !requests->is_array() || requests->empty() ||
      requests->size() > limits.max_requests) {
    throw invalid_request("field 'requests' must be an array of 1 to " +
                          std::to_string(limits.max_requests) + " URLs or request objects");
  }
  batch.requests.reserve(requests->size());
  for (std::size_t i = 0; i < requests->size(); ++i) {
    const json& entry = (*requests)[i];
    const std::string path = "requests[" + std::to_string(i) + "]";
    outbound_request request;
    if (entry.is_object()) {
      object_reader e(entry, path, {"url", "method", "headers", "body"});
      const json* url = e.raw("url");
      if (!url) throw invalid_request("field '" + e.field("url") + "' is required");
      request.url = checked_url(*url, e.field("url"));
      read_request_fields(e, request);
    } else {
      request.url = checked_url(entry, path);
    }
    request.timeout = timeout;
    request.max_body_bytes = body_bytes;
    request.max_redirects = redirects;
    batch.requests.push_back(std::move(request));
  }

  batch.concurrency = static_cast<std::size_t>(
      r.integer("concurrency", 1, static_cast<std::int64_t>(limits.max_concurrency)).value_or(16));
  if (auto rate = r.object("rate", {"per_second", "burst", "per"})) {
    core::rate limit;
    const auto per_second = rate->number("per_second", 0.001, 1e6);
    if (!per_second) throw invalid_request("field 'rate.per_second' is required");
    limit.per_second = *per_second;
    limit.burst = static_cast<int>(rate->integer("burst", 1, 100000).value_or(1));
    if (auto per = rate->string("per", 16)) {
      if (*per != "host" && *per != "batch") {
        throw invalid_request("field 'rate.per' must be \"host\" or \"batch\"");
      }
      batch.per_host = *per == "host";
    }
    batch.limit = limit;
  }
  if (auto retry = r.object("retry", {"max_attempts", "initial_backoff_ms", "multiplier",
                                      "max_backoff_ms", "jitter"})) {
    batch.retry = parse_retry(*retry);
  }
  batch.deadline = r.duration("deadline_ms", max_duration_ms);
  out.async = r.boolean("async").value_or(false);
  return out;
}

}  // namespace gatherd::service
