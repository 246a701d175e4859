#include "service/codec/job_codec.hpp"

#include <openssl/sha.h>

#include <chrono>

#include "libcore/hex.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/json_text.hpp"
#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

using namespace core;

constexpr std::int64_t max_duration_ms = 86'400'000;  // one day
constexpr std::size_t max_labels = 32;
constexpr std::size_t max_label_length = 256;
constexpr std::size_t max_text = 1024;

sleep_params parse_sleep(object_reader& r) {
  sleep_params p;
  auto duration = r.duration("duration_ms", max_duration_ms);
  if (!duration) throw invalid_request("field '" + r.field("duration_ms") + "' is required");
  p.duration = *duration;
  if (const json* result = r.raw("result")) p.result = *result;
  p.fail = r.string("fail", max_text);
  p.fail_attempts = static_cast<int>(r.integer("fail_attempts", 0, 100).value_or(0));
  p.cleanup = r.duration("cleanup_ms", max_duration_ms).value_or(millis{0});
  return p;
}

compute_params parse_compute(const json& value, const std::string& path) {
  // The fields allowed depend on the operation.
  const json* op_value = value.is_object() && value.contains("op") ? &value["op"] : nullptr;
  const std::string op = op_value && op_value->is_string() ? op_value->get<std::string>() : "";
  if (value.is_object() && op != "primes" && op != "sha256") {
    throw invalid_request("field '" + path + ".op' must be \"primes\" or \"sha256\"");
  }
  object_reader r = op == "sha256" ? object_reader(value, path, {"op", "data", "rounds"})
                                   : object_reader(value, path, {"op", "n"});
  r.string("op", 16);
  compute_params p;
  if (op == "primes") {
    p.op = compute_params::operation::primes;
    auto n = r.integer("n", 0, 10'000'000'000);
    if (!n) throw invalid_request("field '" + r.field("n") + "' is required for op primes");
    p.n = static_cast<std::uint64_t>(*n);
  } else if (op == "sha256") {
    p.op = compute_params::operation::sha256;
    auto data = r.string("data", std::string::npos);
    if (!data) throw invalid_request("field '" + r.field("data") + "' is required for op sha256");
    p.data = std::move(*data);
    p.rounds = static_cast<std::uint64_t>(r.integer("rounds", 1, 1'000'000'000).value_or(1));
  }
  return p;
}

}  // namespace

retry_policy parse_retry(object_reader& r) {
  retry_policy p = retry_policy::with_defaults();
  p.max_attempts = static_cast<int>(r.integer("max_attempts", 1, 100).value_or(p.max_attempts));
  p.initial_backoff = r.duration("initial_backoff_ms", max_duration_ms).value_or(p.initial_backoff);
  p.multiplier = r.number("multiplier", 1.0, 100.0).value_or(p.multiplier);
  p.max_backoff = r.duration("max_backoff_ms", max_duration_ms).value_or(p.max_backoff);
  p.jitter = r.boolean("jitter").value_or(p.jitter);
  return p;
}

namespace {

job_labels parse_labels(const json& value, const std::string& field) {
  if (!value.is_object())
    throw invalid_request("field '" + field + "' must be an object of strings");
  if (value.size() > max_labels) {
    throw invalid_request("field '" + field + "' may hold at most " + std::to_string(max_labels) +
                          " labels");
  }
  job_labels labels;
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (!it->is_string() || it.key().empty() || it.key().size() > max_label_length ||
        it->get_ref<const std::string&>().size() > max_label_length) {
      throw invalid_request("label '" + it.key() + "' in '" + field +
                            "' must be a non-empty key with a string value, each at most " +
                            std::to_string(max_label_length) + " characters");
    }
    labels.emplace_back(it.key(), it->get<std::string>());
  }
  return labels;
}

std::string fingerprint_of(const json& spec) {
  // nlohmann keeps object keys sorted, so equal specs dump to equal text.
  const std::string text = to_json_text(spec);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

}  // namespace

job_spec parse_job_spec(const json& body, const spec_limits& limits, const std::string& path) {
  object_reader r(body, path,
                  {"kind", "params", "timeout_ms", "attempt_timeout_ms", "retry", "idempotency_key",
                   "labels", "retention_ms"});
  job_spec spec;
  auto kind_name = r.string("kind", 32);
  if (!kind_name) throw invalid_request("field '" + r.field("kind") + "' is required");
  auto kind = parse_job_kind(*kind_name);
  if (!kind) {
    throw invalid_request("field '" + r.field("kind") +
                          "' must be one of: sleep, compute, fetch (got \"" + *kind_name + "\")");
  }
  if (*kind == job_kind::fetch_batch) {
    throw invalid_request("field '" + r.field("kind") +
                          "': fetch_batch jobs are made by POST /v1/fetch with \"async\": true");
  }
  spec.timeout = r.duration("timeout_ms", max_duration_ms);
  spec.attempt_timeout = r.duration("attempt_timeout_ms", max_duration_ms);
  const json* params = r.raw("params");
  if (!params) throw invalid_request("field '" + r.field("params") + "' is required");
  if (*kind == job_kind::sleep) {
    object_reader sleep(*params, r.field("params"),
                        {"duration_ms", "result", "fail", "fail_attempts", "cleanup_ms"});
    spec.params = parse_sleep(sleep);
  } else if (*kind == job_kind::fetch) {
    spec.params = fetch_params{
        parse_fetch_params(*params, r.field("params"), limits.fetch, spec.attempt_timeout)};
  } else {
    spec.params = parse_compute(*params, r.field("params"));
  }

  if (auto retry = r.object("retry", {"max_attempts", "initial_backoff_ms", "multiplier",
                                      "max_backoff_ms", "jitter"})) {
    spec.retry = parse_retry(*retry);
  }
  if (auto key = r.string("idempotency_key", 256)) {
    if (key->empty())
      throw invalid_request("field '" + r.field("idempotency_key") + "' must not be empty");
    spec.idempotency_key = std::move(*key);
    spec.fingerprint = fingerprint_of(body);
  }
  if (const json* labels = r.raw("labels")) {
    spec.labels = parse_labels(*labels, r.field("labels"));
  }
  if (auto retention = r.integer("retention_ms", 0, max_duration_ms * 365)) {
    if (*retention > limits.max_retention.count()) {
      throw invalid_request("field '" + r.field("retention_ms") +
                            "' must not exceed the server's " +
                            std::to_string(limits.max_retention.count()) + " ms");
    }
    spec.retention = millis{*retention};
  }
  return spec;
}

namespace {

// `value` in decimal, zero-padded to `width` digits.
void append_padded(fmt::memory_buffer& out, unsigned value, int width) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < 10);
  for (int i = n; i < width; ++i) out.push_back('0');
  while (n > 0) out.push_back(digits[--n]);
}

}  // namespace

// Written by hand (three per job, on every answer); calendar arithmetic from <chrono>, done once
// per second per thread: the jobs of one answer mostly share their second.
void write_timestamp(fmt::memory_buffer& out, wall_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = time_point_cast<milliseconds>(t);
  const auto second = floor<seconds>(ms);
  thread_local seconds cached_second{-1};
  thread_local fmt::memory_buffer cached_text;  // "YYYY-MM-DDTHH:MM:SS" of cached_second
  if (second.time_since_epoch() != cached_second) {
    const auto day = floor<days>(second);
    const year_month_day date{day};
    const hh_mm_ss time{second - day};
    cached_text.clear();
    append_padded(cached_text, static_cast<unsigned>(static_cast<int>(date.year())), 4);
    cached_text.push_back('-');
    append_padded(cached_text, static_cast<unsigned>(date.month()), 2);
    cached_text.push_back('-');
    append_padded(cached_text, static_cast<unsigned>(date.day()), 2);
    cached_text.push_back('T');
    append_padded(cached_text, static_cast<unsigned>(time.hours().count()), 2);
    cached_text.push_back(':');
    append_padded(cached_text, static_cast<unsigned>(time.minutes().count()), 2);
    cached_text.push_back(':');
    append_padded(cached_text, static_cast<unsigned>(time.seconds().count()), 2);
    cached_second = second.time_since_epoch();
  }
  out.append(std::string_view(cached_text.data(), cached_text.size()));
  out.push_back('.');
  append_padded(out, static_cast<unsigned>((ms - second).count()), 3);
  out.push_back('Z');
}

namespace {

void write_optional_timestamp(fmt::memory_buffer& out,
                              const std::optional<wall_clock::time_point>& t) {
  if (!t) {
    out.append(std::string_view("null"));
    return;
  }
  out.push_back('"');
  write_timestamp(out, *t);
  out.push_back('"');
}

void append(fmt::memory_buffer& out, std::string_view text) {
  out.append(text);
}

// A value as it is; a fetch's typed result by the fetch codec.
void write_job_result(fmt::memory_buffer& out, const job_result& result) {
  if (const auto* value = std::get_if<json>(&result.value)) {
    append_json(out, *value);
  } else if (const auto* fetched = std::get_if<fetch::fetch_result>(&result.value)) {
    write_fetch_result(out, *fetched);
  } else {
    write_fetch_batch(out, std::get<fetch::batch_outcome>(result.value));
  }
}

}  // namespace

void write_job(fmt::memory_buffer& out, const job_snapshot& job) {
  append(out, "{\"id\":\"");
  char id[2 * sizeof job.id.bytes];
  out.append(id, core::write_hex(job.id.bytes, id));
  append(out, "\",\"kind\":\"");
  append(out, to_string(job.kind));
  append(out, "\",\"state\":\"");
  append(out, to_string(job.state));
  append(out, "\",\"labels\":{");
  for (std::size_t i = 0; i < job.labels.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, job.labels[i].first);
    out.push_back(':');
    append_json_string(out, job.labels[i].second);
  }
  append(out, "},\"attempts\":");
  append(out, fmt::format_int(job.attempts).c_str());
  append(out, job.cancel_requested ? ",\"cancel_requested\":true" : ",\"cancel_requested\":false");
  append(out, ",\"created_at\":");
  write_optional_timestamp(out, job.created_at);
  append(out, ",\"started_at\":");
  write_optional_timestamp(out, job.started_at);
  append(out, ",\"finished_at\":");
  write_optional_timestamp(out, job.finished_at);
  append(out, ",\"duration_ms\":");
  if (job.started_at && job.finished_at) {
    append(out, fmt::format_int(
                    std::chrono::duration_cast<millis>(*job.finished_at - *job.started_at).count())
                    .c_str());
  } else {
    append(out, "null");
  }
  append(out, ",\"result\":");
  if (job.result) {
    write_job_result(out, *job.result);
  } else {
    append(out, "null");
  }
  append(out, ",\"error\":");
  if (job.error) {
    append(out, "{\"type\":");
    append_json_string(out, job.error->type);
    append(out, ",\"message\":");
    append_json_string(out, job.error->message);
    out.push_back('}');
  } else {
    append(out, "null");
  }
  out.push_back('}');
}

std::string encode_job(const job_snapshot& job) {
  fmt::memory_buffer out;
  write_job(out, job);
  return fmt::to_string(out);
}

namespace {

constexpr long long max_page = 1000;

// {"jobs":[job, ...]} plus whatever `tail` adds before the closing brace.
template <class Jobs, class Project>
std::string job_array(const Jobs& jobs, Project project, std::string_view tail = {}) {
  fmt::memory_buffer out;
  append(out, "{\"jobs\":[");
  bool first = true;
  for (const auto& item : jobs) {
    if (!first) out.push_back(',');
    first = false;
    write_job(out, project(item));
  }
  out.push_back(']');
  append(out, tail);
  out.push_back('}');
  return fmt::to_string(out);
}

}  // namespace

std::vector<job_spec> parse_job_batch(const json& body, const spec_limits& limits,
                                      std::size_t max_batch) {
  object_reader r(body, "", {"jobs"});
  const json* jobs = r.raw("jobs");
  if (!jobs || !jobs->is_array() || jobs->empty() || jobs->size() > max_batch) {
    throw invalid_request("field 'jobs' must be an array of 1 to " + std::to_string(max_batch) +
                          " job specs");
  }
  std::vector<job_spec> specs;
  specs.reserve(jobs->size());
  for (std::size_t i = 0; i < jobs->size(); ++i) {
    specs.push_back(parse_job_spec((*jobs)[i], limits, "jobs[" + std::to_string(i) + "]"));
  }
  return specs;
}

std::string encode_submissions(const std::vector<submission>& submitted) {
  return job_array(submitted, [](const submission& s) -> const job_snapshot& { return s.job; });
}

job_query parse_job_query(const std::vector<std::pair<std::string, std::string>>& params) {
  query_reader q(params);
  job_query query;
  if (auto state = q.single("state")) {
    query.state = parse_job_state(*state);
    if (!query.state) {
      throw invalid_request(
          "query parameter 'state' must be one of queued, running, succeeded, "
          "failed, cancelled, timed_out");
    }
  }
  if (auto kind = q.single("kind")) {
    query.kind = parse_job_kind(*kind);
    if (!query.kind)
      throw invalid_request(
          "query parameter 'kind' must be one of sleep, compute, fetch, fetch_batch");
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
  return query;
}

std::string encode_job_page(const job_page& page) {
  const std::string next =
      page.next ? ",\"next\":\"" + std::to_string(*page.next) + "\"" : ",\"next\":null";
  return job_array(
      page.jobs, [](const job_snapshot& j) -> const job_snapshot& { return j; }, next);
}

}  // namespace gatherd::service
