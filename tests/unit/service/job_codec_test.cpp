// The job codec (service/codec/job_codec.hpp): job specs in (strictly validated, every refusal
// a 400 naming its field), job objects, pages and batches out, byte for byte.
#include "service/codec/job_codec.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "libcore/job_result.hpp"
#include "service/codec/json_reader.hpp"
#include "service/http/problem.hpp"
#include "support/refusal.hpp"

namespace gatherd::service {
namespace {

using namespace test;

using namespace std::chrono;
using namespace std::chrono_literals;
using core::millis;

core::job_spec spec_of(const std::string& text, const spec_limits& limits = {},
                       const std::string& path = "") {
  return parse_job_spec(parse_json_body(text), limits, path);
}

// The 400 that parsing `text` gives.
void expect_spec_400(const std::string& text, const std::string& message,
                     const std::string& path = "") {
  expect_400([&] { spec_of(text, {}, path); }, message);
}

// ---- parse_job_spec

TEST(JobSpec, SleepFields) {
  const core::job_spec s = spec_of(
      R"({"kind": "sleep",
          "params": {"duration_ms": 250, "result": {"a": [1, "x"]}, "fail": "boom",
                     "fail_attempts": 2, "cleanup_ms": 50},
          "timeout_ms": 1000, "attempt_timeout_ms": 500, "retention_ms": 60000})");
  EXPECT_EQ(s.kind(), core::job_kind::sleep);
  ASSERT_TRUE(std::holds_alternative<core::sleep_params>(s.params));
  const auto& p = std::get<core::sleep_params>(s.params);
  EXPECT_EQ(p.duration, millis{250});
  EXPECT_EQ(p.result, json::parse(R"({"a": [1, "x"]})"));
  EXPECT_EQ(p.fail, "boom");
  EXPECT_EQ(p.fail_attempts, 2);
  EXPECT_EQ(p.cleanup, millis{50});
  EXPECT_EQ(s.timeout, millis{1000});
  EXPECT_EQ(s.attempt_timeout, millis{500});
  EXPECT_EQ(s.retention, millis{60000});
  EXPECT_TRUE(s.idempotency_key.empty());
  EXPECT_TRUE(s.fingerprint.empty());
  EXPECT_TRUE(s.labels.empty());
  // No `retry` object: one attempt.
  EXPECT_EQ(s.retry.max_attempts, 1);
}

TEST(JobSpec, SleepDefaults) {
  const core::job_spec s = spec_of(R"({"kind": "sleep", "params": {"duration_ms": 0}})");
  const auto& p = std::get<core::sleep_params>(s.params);
  EXPECT_EQ(p.duration, millis{0});
  EXPECT_EQ(p.result, std::nullopt);
  EXPECT_EQ(p.fail, std::nullopt);
  EXPECT_EQ(p.fail_attempts, 0);
  EXPECT_EQ(p.cleanup, millis{0});
  EXPECT_EQ(s.timeout, std::nullopt);
  EXPECT_EQ(s.attempt_timeout, std::nullopt);
  EXPECT_EQ(s.retention, std::nullopt);
  // A `result` of null is a result (the JSON value null), not an absent one.
  const core::job_spec null_result =
      spec_of(R"({"kind": "sleep", "params": {"duration_ms": 1, "result": null}})");
  EXPECT_EQ(std::get<core::sleep_params>(null_result.params).result, json(nullptr));
}

TEST(JobSpec, ComputePrimes) {
  const core::job_spec s =
      spec_of(R"({"kind": "compute", "params": {"op": "primes", "n": 1000000}})");
  EXPECT_EQ(s.kind(), core::job_kind::compute);
  const auto& p = std::get<core::compute_params>(s.params);
  EXPECT_EQ(p.op, core::compute_params::operation::primes);
  EXPECT_EQ(p.n, 1000000u);
  const core::job_spec max =
      spec_of(R"({"kind": "compute", "params": {"op": "primes", "n": 10000000000}})");
  EXPECT_EQ(std::get<core::compute_params>(max.params).n, 10000000000u);
}

TEST(JobSpec, ComputeSha256) {
  const core::job_spec s =
      spec_of(R"({"kind": "compute", "params": {"op": "sha256", "data": "abc", "rounds": 3}})");
  const auto& p = std::get<core::compute_params>(s.params);
  EXPECT_EQ(p.op, core::compute_params::operation::sha256);
  EXPECT_EQ(p.data, "abc");
  EXPECT_EQ(p.rounds, 3u);
  const core::job_spec one =
      spec_of(R"({"kind": "compute", "params": {"op": "sha256", "data": ""}})");
  EXPECT_EQ(std::get<core::compute_params>(one.params).rounds, 1u);
  EXPECT_EQ(std::get<core::compute_params>(one.params).data, "");
}

TEST(JobSpec, ComputeRefusals) {
  const std::string op = R"(field 'params.op' must be "primes" or "sha256")";
  expect_spec_400(R"({"kind": "compute", "params": {"n": 5}})", op);
  expect_spec_400(R"({"kind": "compute", "params": {"op": "md5"}})", op);
  expect_spec_400(R"({"kind": "compute", "params": {"op": 5}})", op);
  expect_spec_400(R"({"kind": "compute", "params": 5})", "field 'params' must be a JSON object");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "primes"}})",
                  "field 'params.n' is required for op primes");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "sha256"}})",
                  "field 'params.data' is required for op sha256");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "primes", "n": 5, "data": "x"}})",
                  "unknown field 'params.data'");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "sha256", "data": "x", "n": 5}})",
                  "unknown field 'params.n'");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "primes", "n": 10000000001}})",
                  "field 'params.n' must be an integer from 0 to 10000000000");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "primes", "n": -1}})",
                  "field 'params.n' must be an integer from 0 to 10000000000");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "sha256", "data": "x", "rounds": 0}})",
                  "field 'params.rounds' must be an integer from 1 to 1000000000");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "sha256", "data": 5}})",
                  "field 'params.data' must be a string");
  expect_spec_400(R"({"kind": "compute", "params": {"op": "primes", "nn": 5}})",
                  "unknown field 'jobs[4].params.nn'", "jobs[4]");
}

TEST(JobSpec, Fetch) {
  const core::job_spec s = spec_of(
      R"({"kind": "fetch", "attempt_timeout_ms": 2500,
          "params": {"url": "https://example.com/a?b=c", "method": "POST",
                     "headers": {"X-Token": "t"}, "body": "hi", "max_body_bytes": 100,
                     "max_redirects": 3}})");
  EXPECT_EQ(s.kind(), core::job_kind::fetch);
  const auto& r = std::get<core::fetch_params>(s.params).request;
  EXPECT_EQ(r.url, "https://example.com/a?b=c");
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.headers, (core::fetch::header_list{{"X-Token", "t"}}));
  EXPECT_EQ(r.body, "hi");
  EXPECT_EQ(r.max_body_bytes, 100u);
  EXPECT_EQ(r.max_redirects, 3);
  EXPECT_EQ(r.timeout, millis{2500});  // the attempt's timeout

  spec_limits limits;
  limits.fetch.default_timeout = millis{3000};
  limits.fetch.default_body_bytes = 1234;
  const core::job_spec d =
      spec_of(R"({"kind": "fetch", "params": {"url": "http://example.com/"}})", limits);
  const auto& dr = std::get<core::fetch_params>(d.params).request;
  EXPECT_EQ(dr.method, "GET");
  EXPECT_EQ(dr.timeout, millis{3000});
  EXPECT_EQ(dr.max_body_bytes, 1234u);
  EXPECT_EQ(dr.max_redirects, 0);

  expect_spec_400(R"({"kind": "fetch", "params": {"url": "ftp://example.com/"}})",
                  "field 'params.url' must be an absolute http:// or https:// URL of at most "
                  "8192 characters");
  expect_spec_400(R"({"kind": "fetch", "params": {"url": "http://example.com/", "rate": 1}})",
                  "unknown field 'jobs[0].params.rate'", "jobs[0]");
}

TEST(JobSpec, RetryDefaultsAndOverrides) {
  const core::job_spec d =
      spec_of(R"({"kind": "sleep", "params": {"duration_ms": 1}, "retry": {}})");
  EXPECT_EQ(d.retry.max_attempts, 3);
  EXPECT_EQ(d.retry.initial_backoff, millis{100});
  EXPECT_EQ(d.retry.multiplier, 2.0);
  EXPECT_EQ(d.retry.max_backoff, millis{10000});
  EXPECT_TRUE(d.retry.jitter);

  const core::job_spec o = spec_of(
      R"({"kind": "sleep", "params": {"duration_ms": 1},
          "retry": {"max_attempts": 5, "initial_backoff_ms": 10, "multiplier": 1.5,
                    "max_backoff_ms": 1000, "jitter": false}})");
  EXPECT_EQ(o.retry.max_attempts, 5);
  EXPECT_EQ(o.retry.initial_backoff, millis{10});
  EXPECT_EQ(o.retry.multiplier, 1.5);
  EXPECT_EQ(o.retry.max_backoff, millis{1000});
  EXPECT_FALSE(o.retry.jitter);

  // A partial object: the rest from the defaults.
  const core::job_spec p =
      spec_of(R"({"kind": "sleep", "params": {"duration_ms": 1}, "retry": {"max_attempts": 10}})");
  EXPECT_EQ(p.retry.max_attempts, 10);
  EXPECT_EQ(p.retry.initial_backoff, millis{100});
  EXPECT_TRUE(p.retry.jitter);
}

TEST(JobSpec, RetryRefusals) {
  const std::string head = R"({"kind": "sleep", "params": {"duration_ms": 1}, "retry": )";
  expect_spec_400(head + R"({"max_attempts": 0}})",
                  "field 'retry.max_attempts' must be an integer from 1 to 100");
  expect_spec_400(head + R"({"max_attempts": 101}})",
                  "field 'retry.max_attempts' must be an integer from 1 to 100");
  expect_spec_400(head + R"({"initial_backoff_ms": -1}})",
                  "field 'retry.initial_backoff_ms' must be an integer from 0 to 86400000");
  expect_spec_400(head + R"({"jitter": "yes"}})", "field 'retry.jitter' must be true or false");
  expect_spec_400(head + R"({"maxattempts": 2}})", "unknown field 'retry.maxattempts'");
  expect_spec_400(head + "5}", "field 'retry' must be a JSON object");
  for (const char* bad : {"0.5", "101", "\"2\""}) {
    const request_error e = refusal([&] { spec_of(head + R"({"multiplier": )" + bad + "}}"); });
    EXPECT_EQ(e.status(), 400u);
    EXPECT_TRUE(std::string(e.what()).starts_with("field 'retry.multiplier' must be a number from"))
        << e.what();
  }
}

TEST(JobSpec, Labels) {
  const core::job_spec s = spec_of(
      R"({"kind": "sleep", "params": {"duration_ms": 1}, "labels": {"team": "a", "env": "prod"}})");
  // Key order (JSON objects are unordered; nlohmann keeps them sorted).
  EXPECT_EQ(s.labels, (core::job_labels{{"env", "prod"}, {"team", "a"}}));
  const core::job_spec empty =
      spec_of(R"({"kind": "sleep", "params": {"duration_ms": 1}, "labels": {"k": ""}})");
  EXPECT_EQ(empty.labels, (core::job_labels{{"k", ""}}));

  const std::string head = R"({"kind": "sleep", "params": {"duration_ms": 1}, "labels": )";
  const std::string rule =
      "must be a non-empty key with a string value, each at most 256 characters";
  expect_spec_400(head + "[]}", "field 'labels' must be an object of strings");
  expect_spec_400(head + R"({"team": 5}})", "label 'team' in 'labels' " + rule);
  expect_spec_400(head + R"({"": "x"}})", "label '' in 'labels' " + rule);
  expect_spec_400(head + R"({"k": ")" + std::string(257, 'v') + R"("}})",
                  "label 'k' in 'labels' " + rule);
  expect_spec_400(head + R"({"team": null}})", "label 'team' in 'jobs[1].labels' " + rule,
                  "jobs[1]");
  EXPECT_NO_THROW(spec_of(head + R"({"k": ")" + std::string(256, 'v') + R"("}})"));

  json many = json::object();
  for (int i = 0; i < 33; ++i) many["k" + std::to_string(i)] = "v";
  expect_spec_400(head + many.dump() + "}", "field 'labels' may hold at most 32 labels");
  many.erase("k0");
  EXPECT_EQ(spec_of(head + many.dump() + "}").labels.size(), 32u);
}

TEST(JobSpec, IdempotencyFingerprint) {
  const core::job_spec a = spec_of(
      R"({"kind": "sleep", "params": {"duration_ms": 5, "result": {"x": 1, "y": [1, 2]}},
          "idempotency_key": "order-1", "labels": {"a": "1", "b": "2"}})");
  const core::job_spec b = spec_of(
      R"({"labels": {"b": "2", "a": "1"}, "idempotency_key": "order-1",
          "params": {"result": {"y": [1, 2], "x": 1}, "duration_ms": 5}, "kind": "sleep"})");
  const core::job_spec c = spec_of(
      R"({"kind": "sleep", "params": {"duration_ms": 6, "result": {"x": 1, "y": [1, 2]}},
          "idempotency_key": "order-1", "labels": {"a": "1", "b": "2"}})");
  EXPECT_EQ(a.idempotency_key, "order-1");
  EXPECT_EQ(a.fingerprint.size(), 32u);  // a SHA-256 digest
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_NE(a.fingerprint, c.fingerprint);
  // The same spec inside a batch (another path) has the same fingerprint.
  const core::job_spec d = spec_of(
      R"({"kind": "sleep", "params": {"duration_ms": 5, "result": {"x": 1, "y": [1, 2]}},
          "idempotency_key": "order-1", "labels": {"a": "1", "b": "2"}})",
      {}, "jobs[7]");
  EXPECT_EQ(a.fingerprint, d.fingerprint);

  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1}, "idempotency_key": ""})",
                  "field 'idempotency_key' must not be empty");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1}, "idempotency_key": 5})",
                  "field 'idempotency_key' must be a string");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1}, "idempotency_key": ")" +
                      std::string(257, 'k') + R"("})",
                  "field 'idempotency_key' must be at most 256 characters");
}

TEST(JobSpec, Retention) {
  spec_limits limits;
  limits.max_retention = millis{1000};
  const core::job_spec s =
      spec_of(R"({"kind": "sleep", "params": {"duration_ms": 1}, "retention_ms": 1000})", limits);
  EXPECT_EQ(s.retention, millis{1000});
  expect_400(
      [&] {
        spec_of(R"({"kind": "sleep", "params": {"duration_ms": 1}, "retention_ms": 1001})", limits);
      },
      "field 'retention_ms' must not exceed the server's 1000 ms");
  expect_400(
      [&] {
        spec_of(R"({"kind": "sleep", "params": {"duration_ms": 1}, "retention_ms": 5000})", limits,
                "jobs[2]");
      },
      "field 'jobs[2].retention_ms' must not exceed the server's 1000 ms");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1}, "retention_ms": 86400001})",
                  "field 'retention_ms' must not exceed the server's 86400000 ms");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1}, "retention_ms": -1})",
                  "field 'retention_ms' must be an integer from 0 to 31536000000");
}

TEST(JobSpec, KindRefusals) {
  expect_spec_400(R"({"params": {"duration_ms": 1}})", "field 'kind' is required");
  expect_spec_400(R"({"params": {"duration_ms": 1}})", "field 'jobs[2].kind' is required",
                  "jobs[2]");
  expect_spec_400(R"({"kind": "nap", "params": {}})",
                  R"(field 'kind' must be one of: sleep, compute, fetch (got "nap"))");
  expect_spec_400(R"({"kind": "Sleep", "params": {}})",
                  R"(field 'kind' must be one of: sleep, compute, fetch (got "Sleep"))");
  expect_spec_400(
      R"({"kind": "fetch_batch", "params": {}})",
      R"(field 'kind': fetch_batch jobs are made by POST /v1/fetch with "async": true)");
  expect_spec_400(R"({"kind": 5, "params": {}})", "field 'kind' must be a string");
  expect_spec_400(R"({"kind": null, "params": {}})", "field 'kind' must be a string");
  expect_spec_400(R"({"kind": ")" + std::string(33, 's') + R"(", "params": {}})",
                  "field 'kind' must be at most 32 characters");
}

TEST(JobSpec, UnknownFields) {
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 100}, "timeout": 500})",
                  "unknown field 'timeout'");
  // Reported before anything else, a missing kind included.
  expect_spec_400(R"({"timeout": 500})", "unknown field 'timeout'");
  expect_spec_400(R"({"kind": "sleep", "params": {"durationms": 5}})",
                  "unknown field 'params.durationms'");
  expect_spec_400(R"({"kind": "sleep", "params": {"durationms": 5}})",
                  "unknown field 'jobs[2].params.durationms'", "jobs[2]");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 5}, "Kind": "x"})",
                  "unknown field 'Kind'");
}

TEST(JobSpec, WrongTypes) {
  expect_400([] { parse_job_spec(json::array(), {}, ""); }, "the body must be a JSON object");
  expect_400([] { parse_job_spec(json("sleep"), {}, "jobs[1]"); },
             "field 'jobs[1]' must be a JSON object");
  expect_spec_400(R"({"kind": "sleep"})", "field 'params' is required");
  expect_spec_400(R"({"kind": "sleep", "params": []})", "field 'params' must be a JSON object");
  expect_spec_400(R"({"kind": "sleep", "params": null})", "field 'params' must be a JSON object");
  expect_spec_400(R"({"kind": "sleep", "params": {}})", "field 'params.duration_ms' is required");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": "5"}})",
                  "field 'params.duration_ms' must be an integer from 0 to 86400000");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 5.5}})",
                  "field 'params.duration_ms' must be an integer from 0 to 86400000");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 5, "fail": false}})",
                  "field 'params.fail' must be a string");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 5}, "timeout_ms": null})",
                  "field 'timeout_ms' must be an integer from 0 to 86400000");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 5}, "timeout_ms": "1s"})",
                  "field 'timeout_ms' must be an integer from 0 to 86400000");
  // 100.0 is an integer.
  EXPECT_EQ(std::get<core::sleep_params>(
                spec_of(R"({"kind": "sleep", "params": {"duration_ms": 100.0}})").params)
                .duration,
            millis{100});
}

TEST(JobSpec, Ranges) {
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 86400001}})",
                  "field 'params.duration_ms' must be an integer from 0 to 86400000");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": -1}})",
                  "field 'params.duration_ms' must be an integer from 0 to 86400000");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1, "fail_attempts": 101}})",
                  "field 'params.fail_attempts' must be an integer from 0 to 100");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1, "cleanup_ms": 86400001}})",
                  "field 'params.cleanup_ms' must be an integer from 0 to 86400000");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1}, "timeout_ms": 86400001})",
                  "field 'timeout_ms' must be an integer from 0 to 86400000");
  expect_spec_400(
      R"({"kind": "sleep", "params": {"duration_ms": 1}, "attempt_timeout_ms": 86400001})",
      "field 'attempt_timeout_ms' must be an integer from 0 to 86400000");
  expect_spec_400(R"({"kind": "sleep", "params": {"duration_ms": 1, "fail": ")" +
                      std::string(1025, 'f') + R"("}})",
                  "field 'params.fail' must be at most 1024 characters");
  EXPECT_NO_THROW(spec_of(R"({"kind": "sleep", "params": {"duration_ms": 86400000}})"));
}

// ---- job objects

core::job_id test_id() {
  core::job_id id;
  for (std::size_t i = 0; i < id.bytes.size(); ++i) id.bytes[i] = static_cast<std::uint8_t>(i);
  return id;
}

const std::string id_text = "000102030405060708090a0b0c0d0e0f";

// 2026-11-22T01:02:03.456Z
core::wall_clock::time_point created_time() {
  return sys_days{2026y / November / 22} + 1h + 2min + 3s + 456ms;
}

std::shared_ptr<const core::job_result> value_result(json value) {
  auto r = std::make_shared<core::job_result>();
  r->value.emplace<json>(std::move(value));
  return r;
}

core::job_snapshot queued_job() {
  core::job_snapshot job;
  job.id = test_id();
  job.seq = 7;
  job.kind = core::job_kind::sleep;
  job.state = core::job_state::queued;
  job.labels = {{"team", "a"}, {"env", "prod"}};
  job.created_at = created_time();
  return job;
}

core::job_snapshot succeeded_job() {
  core::job_snapshot job;
  job.id = test_id();
  job.kind = core::job_kind::compute;
  job.state = core::job_state::succeeded;
  job.attempts = 2;
  job.created_at = created_time();
  job.started_at = created_time() + 1500ms;
  job.finished_at = created_time() + 1500ms + 2250ms;
  job.result = value_result(json::parse(R"({"b": [1, 2.5, null], "a": "x"})"));
  return job;
}

std::string timestamp(core::wall_clock::time_point t) {
  fmt::memory_buffer out;
  write_timestamp(out, t);
  return fmt::to_string(out);
}

TEST(JobText, Timestamps) {
  EXPECT_EQ(timestamp(core::wall_clock::time_point{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(timestamp(created_time()), "2026-11-22T01:02:03.456Z");
  // Same second again (cached), another millisecond.
  EXPECT_EQ(timestamp(created_time() + 500ms), "2026-11-22T01:02:03.956Z");
  EXPECT_EQ(timestamp(created_time() + 544ms), "2026-11-22T01:02:04.000Z");
  // Back to an earlier second.
  EXPECT_EQ(timestamp(created_time() - 457ms), "2026-11-22T01:02:02.999Z");
  // Sub-millisecond time is cut, not rounded.
  EXPECT_EQ(timestamp(sys_days{2000y / February / 29} + 23h + 59min + 59s + 999999us),
            "2000-02-29T23:59:59.999Z");
  EXPECT_EQ(timestamp(sys_days{2024y / January / 1} + 1999us), "2024-01-01T00:00:00.001Z");
  EXPECT_EQ(timestamp(sys_days{2199y / December / 31} + 23h + 59min + 59s + 999ms),
            "2199-12-31T23:59:59.999Z");
  EXPECT_EQ(timestamp(sys_days{2026y / March / 9} + 10h + 7min + 5s + 30ms),
            "2026-03-09T10:07:05.030Z");
}

TEST(JobText, QueuedWithLabels) {
  EXPECT_EQ(encode_job(queued_job()),
            R"({"id":")" + id_text +
                R"(","kind":"sleep","state":"queued","labels":{"team":"a","env":"prod"},)"
                R"("attempts":0,"cancel_requested":false,"created_at":"2026-11-22T01:02:03.456Z",)"
                R"("started_at":null,"finished_at":null,"duration_ms":null,"result":null,)"
                R"("error":null})");
}

TEST(JobText, SucceededWithResult) {
  EXPECT_EQ(
      encode_job(succeeded_job()),
      R"({"id":")" + id_text +
          R"(","kind":"compute","state":"succeeded","labels":{},"attempts":2,)"
          R"("cancel_requested":false,"created_at":"2026-11-22T01:02:03.456Z",)"
          R"("started_at":"2026-11-22T01:02:04.956Z","finished_at":"2026-11-22T01:02:07.206Z",)"
          R"("duration_ms":2250,"result":{"a":"x","b":[1,2.5,null]},"error":null})");
}

TEST(JobText, ErrorObject) {
  core::job_snapshot job = queued_job();
  job.labels.clear();
  job.state = core::job_state::cancelled;
  job.cancel_requested = true;
  job.attempts = 1;
  job.started_at = created_time();
  job.finished_at = created_time() + 613ms;
  job.error = core::job_error{"cancelled", "user said \"stop\"\n"};
  EXPECT_EQ(
      encode_job(job),
      R"({"id":")" + id_text +
          R"(","kind":"sleep","state":"cancelled","labels":{},"attempts":1,)"
          R"("cancel_requested":true,"created_at":"2026-11-22T01:02:03.456Z",)"
          R"("started_at":"2026-11-22T01:02:03.456Z","finished_at":"2026-11-22T01:02:04.069Z",)"
          R"("duration_ms":613,"result":null,)"
          R"("error":{"type":"cancelled","message":"user said \"stop\"\n"}})");
}

TEST(JobText, EscapedLabelsAndEveryKindAndState) {
  core::job_snapshot job = queued_job();
  job.labels = {{"k\"1", "v\\\n"}, {"caf\xC3\xA9", "\x01"}};
  const json doc = json::parse(encode_job(job));
  EXPECT_EQ(doc.at("labels"), (json{{"k\"1", "v\\\n"}, {"caf\xC3\xA9", "\x01"}}));
  EXPECT_NE(encode_job(job).find(R"("labels":{"k\"1":"v\\\n","café":"\u0001"})"), std::string::npos)
      << encode_job(job);
  for (core::job_kind k : core::all_job_kinds) {
    job.kind = k;
    EXPECT_EQ(json::parse(encode_job(job)).at("kind"), core::to_string(k));
  }
  for (core::job_state s : core::all_job_states) {
    job.state = s;
    EXPECT_EQ(json::parse(encode_job(job)).at("state"), core::to_string(s));
  }
}

TEST(JobText, WriteJobAppends) {
  fmt::memory_buffer out;
  out.push_back('[');
  write_job(out, queued_job());
  out.push_back(',');
  write_job(out, succeeded_job());
  out.push_back(']');
  EXPECT_EQ(fmt::to_string(out),
            "[" + encode_job(queued_job()) + "," + encode_job(succeeded_job()) + "]");
}

TEST(JobText, FetchResults) {
  core::fetch::fetch_result fetched;
  fetched.url = "http://example.com/";
  fetched.status = 200;
  fetched.headers = {{"Content-Type", "text/plain"}};
  fetched.body = "hi";
  fetched.attempts = 1;
  fetched.elapsed = millis{12};
  core::job_snapshot job = succeeded_job();
  job.kind = core::job_kind::fetch;
  auto result = std::make_shared<core::job_result>();
  result->value.emplace<core::fetch::fetch_result>(fetched);
  job.result = result;
  const std::string fetch_text =
      R"({"attempts":1,"body":"hi","body_bytes":2,"elapsed_ms":12,"error":null,)"
      R"("headers":{"content-type":"text/plain"},"status":200,"truncated":false,)"
      R"("url":"http://example.com/"})";
  EXPECT_NE(encode_job(job).find(R"(,"result":)" + fetch_text + R"(,"error":null})"),
            std::string::npos)
      << encode_job(job);

  core::fetch::batch_outcome batch;
  batch.results = {fetched};
  batch.summary.ok = 1;
  batch.summary.elapsed = millis{15};
  job.kind = core::job_kind::fetch_batch;
  auto batch_result = std::make_shared<core::job_result>();
  batch_result->value.emplace<core::fetch::batch_outcome>(batch);
  job.result = batch_result;
  EXPECT_NE(encode_job(job).find(R"(,"result":{"results":[)" + fetch_text +
                                 R"(],"summary":{"elapsed_ms":15,"failed":0,"ok":1,)"
                                 R"("throttled_ms":0}},"error":null})"),
            std::string::npos)
      << encode_job(job);
}

// ---- batches, queries, pages

TEST(JobBatch, ParsesEverySpec) {
  const auto specs =
      parse_job_batch(parse_json_body(R"({"jobs": [{"kind": "sleep", "params": {"duration_ms": 1}},
                                   {"kind": "compute", "params": {"op": "primes", "n": 10}}]})"),
                      {}, 10);
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].kind(), core::job_kind::sleep);
  EXPECT_EQ(specs[1].kind(), core::job_kind::compute);
}

TEST(JobBatch, Refusals) {
  const std::string size = "field 'jobs' must be an array of 1 to 2 job specs";
  auto batch = [](const std::string& text) {
    return [text] { parse_job_batch(parse_json_body(text), {}, 2); };
  };
  const std::string spec = R"({"kind": "sleep", "params": {"duration_ms": 1}})";
  expect_400(batch(R"({"jobs": []})"), size);
  expect_400(batch(R"({"jobs": [)" + spec + "," + spec + "," + spec + "]}"), size);
  expect_400(batch(R"({"jobs": {}})"), size);
  expect_400(batch(R"({})"), size);
  expect_400(batch(R"([])"), "the body must be a JSON object");
  expect_400(batch(R"({"jobs": [)" + spec + R"(], "x": 1})"), "unknown field 'x'");
  expect_400(batch(R"({"jobs": [)" + spec + R"(, 5]})"), "field 'jobs[1]' must be a JSON object");
  expect_400(
      batch(R"({"jobs": [)" + spec + R"(, {"kind": "sleep", "params": {"durationms": 1}}]})"),
      "unknown field 'jobs[1].params.durationms'");
  expect_400(
      [] {
        const std::string spec = R"({"kind": "sleep", "params": {"duration_ms": 1}})";
        parse_job_batch(parse_json_body(R"({"jobs": [)" + spec + "," + spec + "," +
                                        R"({"kind": "sleep", "params": {"durationms": 1}}]})"),
                        {}, 10);
      },
      "unknown field 'jobs[2].params.durationms'");
}

TEST(JobBatch, Submissions) {
  std::vector<core::submission> submitted = {{queued_job(), true}, {succeeded_job(), false}};
  EXPECT_EQ(encode_submissions(submitted),
            R"({"jobs":[)" + encode_job(queued_job()) + "," + encode_job(succeeded_job()) + "]}");
  EXPECT_EQ(encode_submissions({}), R"({"jobs":[]})");
}

using params = std::vector<std::pair<std::string, std::string>>;

TEST(JobQuery, Defaults) {
  const core::job_query q = parse_job_query({});
  EXPECT_EQ(q.state, std::nullopt);
  EXPECT_EQ(q.kind, std::nullopt);
  EXPECT_TRUE(q.labels.empty());
  EXPECT_EQ(q.limit, 100u);
  EXPECT_EQ(q.before_seq, std::nullopt);
}

TEST(JobQuery, AllParameters) {
  const core::job_query q = parse_job_query({{"state", "running"},
                                             {"kind", "compute"},
                                             {"label", "team:a"},
                                             {"label", "url:http://x:8080/"},
                                             {"label", "empty:"},
                                             {"limit", "50"},
                                             {"after", "12"}});
  EXPECT_EQ(q.state, core::job_state::running);
  EXPECT_EQ(q.kind, core::job_kind::compute);
  EXPECT_EQ(q.labels, (core::job_labels{{"team", "a"}, {"url", "http://x:8080/"}, {"empty", ""}}));
  EXPECT_EQ(q.limit, 50u);
  EXPECT_EQ(q.before_seq, 12u);
  for (core::job_state s : core::all_job_states) {
    EXPECT_EQ(parse_job_query({{"state", std::string(core::to_string(s))}}).state, s);
  }
  EXPECT_EQ(parse_job_query({{"kind", "sleep"}}).kind, core::job_kind::sleep);
  EXPECT_EQ(parse_job_query({{"kind", "fetch"}}).kind, core::job_kind::fetch);
  EXPECT_EQ(parse_job_query({{"kind", "fetch_batch"}}).kind, core::job_kind::fetch_batch);
  EXPECT_EQ(parse_job_query({{"limit", "1"}}).limit, 1u);
  EXPECT_EQ(parse_job_query({{"limit", "1000"}}).limit, 1000u);
}

TEST(JobQuery, Refusals) {
  auto query = [](params p) { return [p] { parse_job_query(p); }; };
  expect_400(query({{"state", "done"}}),
             "query parameter 'state' must be one of queued, running, succeeded, failed, "
             "cancelled, timed_out");
  {
    const request_error e = refusal(query({{"kind", "nap"}}));
    EXPECT_EQ(e.status(), 400u);
    EXPECT_TRUE(std::string(e.what()).starts_with("query parameter 'kind' must be one of"))
        << e.what();
  }
  for (const char* label : {"team", ":a", ""}) {
    expect_400(query({{"label", label}}), "query parameter 'label' must be key:value");
  }
  for (const char* limit : {"0", "1001", "abc", "-5", ""}) {
    expect_400(query({{"limit", limit}}),
               "query parameter 'limit' must be an integer from 1 to 1000");
  }
  for (const char* after : {"0", "abc", "-1", "12x", ""}) {
    expect_400(query({{"after", after}}),
               "query parameter 'after' must be a cursor from a previous page's 'next'");
  }
  expect_400(query({{"sate", "queued"}}), "unknown query parameter 'sate'");
  expect_400(query({{"state", "queued"}, {"wait_ms", "10"}}), "unknown query parameter 'wait_ms'");
  expect_400(query({{"state", "queued"}, {"state", "running"}}),
             "query parameter 'state' is repeated");
  expect_400(query({{"after", "1"}, {"after", "2"}}), "query parameter 'after' is repeated");
  expect_400(query({{"limit", "1"}, {"limit", "1"}}), "query parameter 'limit' is repeated");
}

TEST(JobPage, NextCursorOrNull) {
  core::job_page page;
  EXPECT_EQ(encode_job_page(page), R"({"jobs":[],"next":null})");
  page.jobs = {queued_job(), succeeded_job()};
  page.next = 42;
  EXPECT_EQ(encode_job_page(page), R"({"jobs":[)" + encode_job(queued_job()) + "," +
                                       encode_job(succeeded_job()) + R"(],"next":"42"})");
  page.jobs.pop_back();
  page.next.reset();
  EXPECT_EQ(encode_job_page(page), R"({"jobs":[)" + encode_job(queued_job()) + R"(],"next":null})");
  // The cursor reads back as `after`.
  EXPECT_EQ(parse_job_query({{"after", "42"}}).before_seq, 42u);
}

}  // namespace
}  // namespace gatherd::service
