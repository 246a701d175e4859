#include "service/codec/fetch_codec.hpp"

#include <map>

#include "libcore/fetch/http_syntax.hpp"
#include "libcore/fetch/url.hpp"
#include "service/codec/job_codec.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/json_text.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

using outbound_request = core::fetch::http_request;

constexpr std::size_t max_url_length = 8192;
constexpr std::size_t max_headers = 64;
constexpr std::int64_t max_duration_ms = 86'400'000;

using core::fetch::is_field_value;
using core::fetch::is_token;

std::string checked_url(const json& value, const std::string& field) {
  if (!value.is_string()) throw invalid_request("field '" + field + "' must be a URL string");
  const std::string& url = value.get_ref<const std::string&>();
  if (url.size() > max_url_length || !core::fetch::try_parse_fetch_url(url)) {
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
    if (!is_token(name) || !it->is_string() || !is_field_value(it->get_ref<const std::string&>())) {
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
                                    const fetch_limits& limits,
                                    std::optional<core::millis> timeout) {
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
      r.integer("concurrency", 1, static_cast<std::int64_t>(limits.max_concurrency))
          .value_or(std::min<std::int64_t>(16, static_cast<std::int64_t>(limits.max_concurrency))));
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

namespace {

void append(fmt::memory_buffer& out, std::string_view text) {
  out.append(text);
}

// Names lower-cased, repeats joined with ", ", in name order: a JSON object of strings.
void write_headers(fmt::memory_buffer& out, const core::fetch::header_list& headers) {
  std::map<std::string, std::string, std::less<>> merged;
  for (const auto& [name, value] : headers) {
    std::string key(name);
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto [it, added] = merged.try_emplace(std::move(key), value);
    if (!added) it->second += ", " + value;
  }
  out.push_back('{');
  bool first = true;
  for (const auto& [name, value] : merged) {
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, name);
    out.push_back(':');
    append_json_string(out, value);
  }
  out.push_back('}');
}

}  // namespace

void write_fetch_result(fmt::memory_buffer& out, const core::fetch::fetch_result& r,
                        std::optional<std::size_t> index) {
  const bool answered = r.status != 0;
  fmt::format_to(std::back_inserter(out), R"({{"attempts":{},"body":)", r.attempts);
  if (answered) {
    append_json_string(out, r.body);
  } else {
    append(out, "null");
  }
  fmt::format_to(std::back_inserter(out), R"(,"body_bytes":{},"elapsed_ms":{},"error":)",
                 r.body.size(), r.elapsed.count());
  if (r.error) {
    append(out, R"({"message":)");
    append_json_string(out, r.error->message);
    append(out, R"(,"type":)");
    append_json_string(out, r.error->type);
    out.push_back('}');
  } else {
    append(out, "null");
  }
  append(out, R"(,"headers":)");
  if (answered) {
    write_headers(out, r.headers);
  } else {
    append(out, "null");
  }
  if (index) fmt::format_to(std::back_inserter(out), R"(,"index":{})", *index);
  append(out, R"(,"status":)");
  if (answered) {
    fmt::format_to(std::back_inserter(out), "{}", r.status);
  } else {
    append(out, "null");
  }
  append(out, r.truncated ? R"(,"truncated":true,"url":)" : R"(,"truncated":false,"url":)");
  append_json_string(out, r.url);
  out.push_back('}');
}

void write_fetch_summary(fmt::memory_buffer& out, const core::fetch::batch_summary& s) {
  fmt::format_to(std::back_inserter(out),
                 R"({{"elapsed_ms":{},"failed":{},"ok":{},"throttled_ms":{}}})", s.elapsed.count(),
                 s.failed, s.ok, s.throttled.count());
}

void write_fetch_batch(fmt::memory_buffer& out, const core::fetch::batch_outcome& outcome) {
  append(out, R"({"results":[)");
  bool first = true;
  for (const auto& r : outcome.results) {
    if (!first) out.push_back(',');
    first = false;
    write_fetch_result(out, r);
  }
  append(out, R"(],"summary":)");
  write_fetch_summary(out, outcome.summary);
  out.push_back('}');
}

std::string encode_fetch_batch(const core::fetch::batch_outcome& outcome) {
  fmt::memory_buffer out;
  write_fetch_batch(out, outcome);
  return fmt::to_string(out);
}

std::string encode_fetch_line(const core::fetch::fetch_result& r, std::size_t index) {
  fmt::memory_buffer out;
  write_fetch_result(out, r, index);
  out.push_back('\n');
  return fmt::to_string(out);
}

std::string encode_fetch_summary_line(const core::fetch::batch_summary& s) {
  fmt::memory_buffer out;
  append(out, R"({"summary":)");
  write_fetch_summary(out, s);
  append(out, "}\n");
  return fmt::to_string(out);
}

}  // namespace gatherd::service
