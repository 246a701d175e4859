// The fetch codec (service/codec/fetch_codec.hpp): POST /v1/fetch bodies and fetch job params
// in (strictly validated), results, batches and NDJSON lines out. The written text is compared
// with the exact expected bytes and with an nlohmann document built from the contract (the
// reference libcore's to_json used to be), dumped as the JSON writer promises to match.
#include "service/codec/fetch_codec.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "service/codec/json_reader.hpp"
#include "service/http/problem.hpp"
#include "support/refusal.hpp"

namespace gatherd::service {
namespace {

using namespace test;

using core::millis;
using core::fetch::batch_outcome;
using core::fetch::batch_summary;
using core::fetch::fetch_result;
using core::fetch::header_list;

fetch_batch_request batch_of(const std::string& text, const fetch_limits& limits = {}) {
  return parse_fetch_batch(parse_json_body(text), limits);
}

void expect_batch_400(const std::string& text, const std::string& message,
                      const fetch_limits& limits = {}) {
  expect_400([&] { batch_of(text, limits); }, message);
}

const std::string url_rule =
    " must be an absolute http:// or https:// URL of at most 8192 characters";

// ---- parse_fetch_batch

TEST(FetchBatch, StringsAndObjectsWithDefaults) {
  const fetch_batch_request b = batch_of(
      R"({"requests": ["http://a.example/x",
                       {"url": "https://b.example:8443/y?q=1", "method": "POST",
                        "headers": {"X-Token": "t", "Accept": "text/plain"}, "body": "hi"}]})");
  EXPECT_FALSE(b.async);
  ASSERT_EQ(b.batch.requests.size(), 2u);
  const auto& a = b.batch.requests[0];
  EXPECT_EQ(a.url, "http://a.example/x");
  EXPECT_EQ(a.method, "GET");
  EXPECT_TRUE(a.headers.empty());
  EXPECT_EQ(a.body, "");
  EXPECT_EQ(a.timeout, millis{10000});
  EXPECT_EQ(a.max_body_bytes, std::size_t{1} << 20);
  EXPECT_EQ(a.max_redirects, 0);
  const auto& o = b.batch.requests[1];
  EXPECT_EQ(o.url, "https://b.example:8443/y?q=1");
  EXPECT_EQ(o.method, "POST");
  // As given (names keep their case; JSON object order).
  EXPECT_EQ(o.headers, (header_list{{"Accept", "text/plain"}, {"X-Token", "t"}}));
  EXPECT_EQ(o.body, "hi");
  EXPECT_EQ(o.timeout, millis{10000});
  EXPECT_EQ(b.batch.concurrency, 16u);
  EXPECT_EQ(b.batch.limit, std::nullopt);
  EXPECT_TRUE(b.batch.per_host);
  EXPECT_EQ(b.batch.retry.max_attempts, 1);  // one attempt unless asked
  EXPECT_EQ(b.batch.deadline, std::nullopt);
}

TEST(FetchBatch, Overrides) {
  fetch_limits limits;
  limits.default_timeout = millis{3000};
  limits.default_body_bytes = 100;
  const fetch_batch_request b = batch_of(
      R"({"requests": ["http://a.example/"], "concurrency": 4, "timeout_ms": 1500,
          "deadline_ms": 60000, "max_body_bytes": 2048, "max_redirects": 5, "async": true,
          "retry": {"max_attempts": 4, "jitter": false}})",
      limits);
  EXPECT_TRUE(b.async);
  EXPECT_EQ(b.batch.concurrency, 4u);
  EXPECT_EQ(b.batch.deadline, millis{60000});
  EXPECT_EQ(b.batch.retry.max_attempts, 4);
  EXPECT_EQ(b.batch.retry.initial_backoff, millis{100});  // the rest from the retry defaults
  EXPECT_FALSE(b.batch.retry.jitter);
  const auto& r = b.batch.requests.at(0);
  EXPECT_EQ(r.timeout, millis{1500});
  EXPECT_EQ(r.max_body_bytes, 2048u);
  EXPECT_EQ(r.max_redirects, 5);

  const fetch_batch_request d = batch_of(R"({"requests": ["http://a.example/"]})", limits);
  EXPECT_EQ(d.batch.requests.at(0).timeout, millis{3000});
  EXPECT_EQ(d.batch.requests.at(0).max_body_bytes, 100u);
}

TEST(FetchBatch, Rate) {
  const fetch_batch_request d =
      batch_of(R"({"requests": ["http://a.example/"], "rate": {"per_second": 5}})");
  ASSERT_TRUE(d.batch.limit.has_value());
  EXPECT_EQ(*d.batch.limit, (core::rate{5, 1}));
  EXPECT_TRUE(d.batch.per_host);

  const fetch_batch_request b = batch_of(
      R"({"requests": ["http://a.example/"], "rate": {"per_second": 2.5, "burst": 4, "per": "batch"}})");
  EXPECT_EQ(b.batch.limit, (core::rate{2.5, 4}));
  EXPECT_FALSE(b.batch.per_host);

  const fetch_batch_request h = batch_of(
      R"({"requests": ["http://a.example/"], "rate": {"per_second": 0.5, "per": "host"}})");
  EXPECT_EQ(h.batch.limit, (core::rate{0.5, 1}));
  EXPECT_TRUE(h.batch.per_host);

  const std::string head = R"({"requests": ["http://a.example/"], "rate": )";
  expect_batch_400(head + R"({"per_second": 5, "per": "url"}})",
                   R"(field 'rate.per' must be "host" or "batch")");
  expect_batch_400(head + R"({"burst": 5}})", "field 'rate.per_second' is required");
  expect_batch_400(head + R"({"per_second": 5, "perhost": true}})", "unknown field 'rate.perhost'");
  expect_batch_400(head + R"({"per_second": 5, "burst": 0}})",
                   "field 'rate.burst' must be an integer from 1 to 100000");
  expect_batch_400(head + "5}", "field 'rate' must be a JSON object");
  for (const char* bad : {"0", "-1", "1000001", "\"5\""}) {
    const request_error e = refusal([&] { batch_of(head + R"({"per_second": )" + bad + "}}"); });
    EXPECT_EQ(e.status(), 400u);
    EXPECT_TRUE(std::string(e.what()).starts_with("field 'rate.per_second' must be a number from"))
        << e.what();
  }
}

TEST(FetchBatch, BadUrls) {
  const std::vector<std::string> bad = {"ftp://example.com/",
                                        "http:///path",
                                        "http://",
                                        "http://user:pw@example.com/",
                                        "http://user@example.com/",
                                        "http://example.com:70000/",
                                        "http://example.com:0/",
                                        "http://example.com:99999999999/",
                                        "example.com",
                                        "/relative",
                                        "",
                                        "javascript:alert(1)",
                                        "http://exa mple.com/",
                                        "http://bad%0d%0ahost/",
                                        "http://" + std::string(8200, 'a') + ".example/"};
  for (const std::string& url : bad) {
    expect_batch_400(R"({"requests": [)" + json(url).dump() + "]}",
                     "field 'requests[0]'" + url_rule);
    expect_batch_400(R"({"requests": ["http://ok.example/", {"url": )" + json(url).dump() + "}]}",
                     "field 'requests[1].url'" + url_rule);
  }
  EXPECT_NO_THROW(batch_of(R"({"requests": ["http://example.com:65535/", "https://[::1]/",
                                             "http://127.0.0.1:8080/x", "HTTP://Example.COM"]})"));
  expect_batch_400(R"({"requests": [5]})", "field 'requests[0]' must be a URL string");
  expect_batch_400(R"({"requests": [null]})", "field 'requests[0]' must be a URL string");
  expect_batch_400(R"({"requests": [{"url": 5}]})", "field 'requests[0].url' must be a URL string");
  expect_batch_400(R"({"requests": [{"method": "GET"}]})", "field 'requests[0].url' is required");
}

TEST(FetchBatch, Headers) {
  const std::string rule =
      "' must be a valid header name with a string value without control characters";
  auto with_headers = [](const std::string& headers) {
    return R"({"requests": [{"url": "http://a.example/", "headers": )" + headers + "}]}";
  };
  expect_batch_400(with_headers(R"({"X-A": "a\r\nInjected: 1"})"),
                   "header 'X-A' in 'requests[0].headers" + rule);
  expect_batch_400(with_headers(R"({"X-A": "a\nb"})"),
                   "header 'X-A' in 'requests[0].headers" + rule);
  expect_batch_400(with_headers(R"({"X-A": "a\u0000b"})"),
                   "header 'X-A' in 'requests[0].headers" + rule);
  expect_batch_400(with_headers(R"({"Bad Name": "x"})"),
                   "header 'Bad Name' in 'requests[0].headers" + rule);
  expect_batch_400(with_headers(R"({"X-B:": "x"})"),
                   "header 'X-B:' in 'requests[0].headers" + rule);
  expect_batch_400(with_headers(R"({"": "x"})"), "header '' in 'requests[0].headers" + rule);
  expect_batch_400(with_headers(R"({"X-N": 5})"), "header 'X-N' in 'requests[0].headers" + rule);
  for (const char* name : {"Content-Length", "transfer-encoding", "CONNECTION"}) {
    expect_batch_400(with_headers("{\"" + std::string(name) + "\": \"x\"}"),
                     "header '" + std::string(name) +
                         "' in 'requests[0].headers' is set by gatherd and may not be given");
  }
  expect_batch_400(with_headers("[]"),
                   "field 'requests[0].headers' must be an object of at most 64 string headers");
  json many = json::object();
  for (int i = 0; i < 65; ++i) many["X-" + std::to_string(i)] = "v";
  expect_batch_400(with_headers(many.dump()),
                   "field 'requests[0].headers' must be an object of at most 64 string headers");
  many.erase("X-0");
  EXPECT_EQ(batch_of(with_headers(many.dump())).batch.requests[0].headers.size(), 64u);
  // A tab is allowed in a value.
  EXPECT_NO_THROW(batch_of(with_headers(R"({"X-A": "a\tb"})")));
}

TEST(FetchBatch, MethodsAndFields) {
  const std::string head = R"({"requests": [{"url": "http://a.example/", )";
  EXPECT_EQ(batch_of(head + R"("method": "PROPFIND"}]})").batch.requests[0].method, "PROPFIND");
  expect_batch_400(head + R"("method": "GE T"}]})",
                   "field 'requests[0].method' must be an HTTP method token");
  expect_batch_400(head + R"("method": ""}]})",
                   "field 'requests[0].method' must be an HTTP method token");
  expect_batch_400(head + R"("method": 5}]})", "field 'requests[0].method' must be a string");
  expect_batch_400(head + R"("body": {}}]})", "field 'requests[0].body' must be a string");
  expect_batch_400(head + R"("timeout_ms": 5}]})", "unknown field 'requests[0].timeout_ms'");
  expect_batch_400(head + R"("max_body_bytes": 5}]})",
                   "unknown field 'requests[0].max_body_bytes'");
}

TEST(FetchBatch, Limits) {
  const std::string one = R"({"requests": ["http://a.example/"], )";
  expect_batch_400(one + R"("concurrency": 257})",
                   "field 'concurrency' must be an integer from 1 to 256");
  expect_batch_400(one + R"("concurrency": 0})",
                   "field 'concurrency' must be an integer from 1 to 256");
  EXPECT_EQ(batch_of(one + R"("concurrency": 256})").batch.concurrency, 256u);
  fetch_limits small;
  small.max_concurrency = 8;
  small.max_requests = 2;
  expect_batch_400(one + R"("concurrency": 9})",
                   "field 'concurrency' must be an integer from 1 to 8", small);
  expect_batch_400(
      R"({"requests": ["http://a.example/", "http://b.example/", "http://c.example/"]})",
      "field 'requests' must be an array of 1 to 2 URLs or request objects", small);
  const std::string requests =
      "field 'requests' must be an array of 1 to 10000 URLs or request objects";
  expect_batch_400(R"({"requests": []})", requests);
  expect_batch_400(R"({"requests": "http://a.example/"})", requests);
  expect_batch_400(R"({})", requests);
  expect_batch_400(one + R"("timeout_ms": 0})", "field 'timeout_ms' must be positive");
  expect_batch_400(one + R"("timeout_ms": 86400001})",
                   "field 'timeout_ms' must be an integer from 0 to 86400000");
  expect_batch_400(one + R"("deadline_ms": -1})",
                   "field 'deadline_ms' must be an integer from 0 to 86400000");
  expect_batch_400(one + R"("max_body_bytes": 10485761})",
                   "field 'max_body_bytes' must be an integer from 0 to 10485760");
  expect_batch_400(one + R"("max_redirects": 11})",
                   "field 'max_redirects' must be an integer from 0 to 10");
  expect_batch_400(one + R"("async": 1})", "field 'async' must be true or false");
  expect_batch_400(one + R"("urls": []})", "unknown field 'urls'");
  expect_batch_400(R"([])", "the body must be a JSON object");
}

// ---- parse_fetch_params

TEST(FetchParams, FieldsAndDefaults) {
  const auto r = parse_fetch_params(
      parse_json_body(R"({"url": "http://example.com/a", "method": "PUT", "headers": {"X-A": "1"},
                          "body": "x", "max_body_bytes": 100, "max_redirects": 3})"),
      "params", fetch_limits{}, millis{2500});
  EXPECT_EQ(r.url, "http://example.com/a");
  EXPECT_EQ(r.method, "PUT");
  EXPECT_EQ(r.headers, (header_list{{"X-A", "1"}}));
  EXPECT_EQ(r.body, "x");
  EXPECT_EQ(r.max_body_bytes, 100u);
  EXPECT_EQ(r.max_redirects, 3);
  EXPECT_EQ(r.timeout, millis{2500});

  fetch_limits limits;
  limits.default_timeout = millis{700};
  limits.default_body_bytes = 55;
  const auto d = parse_fetch_params(parse_json_body(R"({"url": "https://example.com"})"), "params",
                                    limits, std::nullopt);
  EXPECT_EQ(d.method, "GET");
  EXPECT_EQ(d.timeout, millis{700});
  EXPECT_EQ(d.max_body_bytes, 55u);
  EXPECT_EQ(d.max_redirects, 0);
}

TEST(FetchParams, Refusals) {
  auto params = [](const std::string& text) {
    return [text] {
      parse_fetch_params(parse_json_body(text), "jobs[1].params", fetch_limits{}, std::nullopt);
    };
  };
  expect_400(params(R"({})"), "field 'jobs[1].params.url' is required");
  expect_400(params(R"({"url": "ftp://x.example/"})"), "field 'jobs[1].params.url'" + url_rule);
  expect_400(params(R"({"url": "http://example.com:70000/"})"),
             "field 'jobs[1].params.url'" + url_rule);
  expect_400(params(R"({"url": "http://a.example/", "concurrency": 2})"),
             "unknown field 'jobs[1].params.concurrency'");
  expect_400(params(R"({"url": "http://a.example/", "max_redirects": 11})"),
             "field 'jobs[1].params.max_redirects' must be an integer from 0 to 10");
  expect_400(params(R"({"url": "http://a.example/", "headers": {"Connection": "close"}})"),
             "header 'Connection' in 'jobs[1].params.headers' is set by gatherd and may not be "
             "given");
  expect_400(params(R"([])"), "field 'jobs[1].params' must be a JSON object");
}

// ---- results out

// The contract, built with nlohmann: the keys sorted, names lower-cased, repeats joined.
json reference(const fetch_result& r, std::optional<std::size_t> index = {}) {
  json out = json::object();
  if (index) out["index"] = *index;
  out["url"] = r.url;
  out["status"] = r.status ? json(r.status) : json(nullptr);
  if (r.status) {
    json headers = json::object();
    for (const auto& [name, value] : r.headers) {
      std::string key = name;
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (headers.contains(key)) {
        headers[key] = headers[key].get<std::string>() + ", " + value;
      } else {
        headers[key] = value;
      }
    }
    out["headers"] = headers;
  } else {
    out["headers"] = nullptr;
  }
  out["body"] = r.status ? json(r.body) : json(nullptr);
  out["body_bytes"] = r.body.size();
  out["truncated"] = r.truncated;
  out["attempts"] = r.attempts;
  out["elapsed_ms"] = r.elapsed.count();
  out["error"] =
      r.error ? json{{"type", r.error->type}, {"message", r.error->message}} : json(nullptr);
  return out;
}

json reference(const batch_summary& s) {
  return json{{"ok", s.ok},
              {"failed", s.failed},
              {"elapsed_ms", s.elapsed.count()},
              {"throttled_ms", s.throttled.count()}};
}

json reference(const batch_outcome& outcome) {
  json results = json::array();
  for (const auto& r : outcome.results) results.push_back(reference(r));
  return json{{"results", results}, {"summary", reference(outcome.summary)}};
}

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

const std::string fffd = "\xEF\xBF\xBD";

fetch_result ok_result() {
  fetch_result r;
  r.url = "http://a.example/x";
  r.status = 200;
  r.headers = {{"Content-Type", "text/plain"},
               {"Set-Cookie", "a=1"},
               {"X-B", "1"},
               {"set-cookie", "b=2"},
               {"SET-COOKIE", "c=3"}};
  r.body = "hello \"world\"\n";
  r.attempts = 1;
  r.elapsed = millis{12};
  r.throttled = millis{3};
  return r;
}

fetch_result unanswered_result() {
  fetch_result r;
  r.url = "http://down.example/";
  r.status = 0;
  r.attempts = 3;
  r.elapsed = millis{3000};
  r.error = core::job_error{"connect", "connection refused"};
  return r;
}

fetch_result binary_result() {
  fetch_result r;
  r.url = "https://b.example/img?x=\"1\"";
  r.status = 503;
  r.headers = {{"Retry-After", "5"}};
  r.body = "ok\xFF\xFE!\xC3";  // not UTF-8
  r.truncated = true;
  r.attempts = 2;
  r.elapsed = millis{40};
  r.error = core::job_error{"http_status", "503 Service Unavailable"};
  return r;
}

const std::string ok_text =
    R"({"attempts":1,"body":"hello \"world\"\n","body_bytes":14,"elapsed_ms":12,"error":null,)"
    R"("headers":{"content-type":"text/plain","set-cookie":"a=1, b=2, c=3","x-b":"1"},)"
    R"("status":200,"truncated":false,"url":"http://a.example/x"})";

const std::string unanswered_text =
    R"({"attempts":3,"body":null,"body_bytes":0,"elapsed_ms":3000,)"
    R"("error":{"message":"connection refused","type":"connect"},"headers":null,"status":null,)"
    R"("truncated":false,"url":"http://down.example/"})";

const std::string binary_text =
    R"({"attempts":2,"body":"ok)" + fffd + fffd + "!" + fffd +
    R"(","body_bytes":6,"elapsed_ms":40,)"
    R"("error":{"message":"503 Service Unavailable","type":"http_status"},)"
    R"("headers":{"retry-after":"5"},"status":503,"truncated":true,)"
    R"("url":"https://b.example/img?x=\"1\""})";

std::string result_text(const fetch_result& r, std::optional<std::size_t> index = {}) {
  fmt::memory_buffer out;
  write_fetch_result(out, r, index);
  return fmt::to_string(out);
}

TEST(FetchText, Results) {
  EXPECT_EQ(result_text(ok_result()), ok_text);
  EXPECT_EQ(result_text(unanswered_result()), unanswered_text);
  EXPECT_EQ(result_text(binary_result()), binary_text);
  for (const fetch_result& r : {ok_result(), unanswered_result(), binary_result()}) {
    EXPECT_EQ(result_text(r), dump(reference(r))) << r.url;
  }
}

TEST(FetchText, EmptyHeadersAndBody) {
  fetch_result r;
  r.url = "http://a.example/";
  r.status = 204;
  EXPECT_EQ(result_text(r),
            R"({"attempts":0,"body":"","body_bytes":0,"elapsed_ms":0,"error":null,"headers":{},)"
            R"("status":204,"truncated":false,"url":"http://a.example/"})");
  EXPECT_EQ(result_text(r), dump(reference(r)));
}

TEST(FetchText, Batch) {
  batch_outcome outcome;
  outcome.results = {ok_result(), unanswered_result(), binary_result()};
  outcome.summary.ok = 1;
  outcome.summary.failed = 2;
  outcome.summary.elapsed = millis{3010};
  outcome.summary.throttled = millis{5};
  const std::string text = encode_fetch_batch(outcome);
  EXPECT_EQ(text, R"({"results":[)" + ok_text + "," + unanswered_text + "," + binary_text +
                      R"(],"summary":{"elapsed_ms":3010,"failed":2,"ok":1,"throttled_ms":5}})");
  EXPECT_EQ(text, dump(reference(outcome)));

  fmt::memory_buffer out;
  out.push_back('[');
  write_fetch_batch(out, outcome);
  out.push_back(']');
  EXPECT_EQ(fmt::to_string(out), "[" + text + "]");
}

TEST(FetchText, EmptyBatch) {
  const batch_outcome outcome;
  EXPECT_EQ(encode_fetch_batch(outcome),
            R"({"results":[],"summary":{"elapsed_ms":0,"failed":0,"ok":0,"throttled_ms":0}})");
  EXPECT_EQ(encode_fetch_batch(outcome), dump(reference(outcome)));
}

TEST(FetchText, Lines) {
  const std::string line = encode_fetch_line(unanswered_result(), 7);
  EXPECT_EQ(line, R"({"attempts":3,"body":null,"body_bytes":0,"elapsed_ms":3000,)"
                  R"("error":{"message":"connection refused","type":"connect"},"headers":null,)"
                  R"("index":7,"status":null,"truncated":false,"url":"http://down.example/"})"
                  "\n");
  for (const fetch_result& r : {ok_result(), unanswered_result(), binary_result()}) {
    for (std::size_t index : {std::size_t{0}, std::size_t{12345}}) {
      EXPECT_EQ(encode_fetch_line(r, index), dump(reference(r, index)) + "\n") << r.url;
      EXPECT_EQ(result_text(r, index) + "\n", encode_fetch_line(r, index));
    }
  }
  batch_summary s;
  s.ok = 9998;
  s.failed = 2;
  s.elapsed = millis{61000};
  s.throttled = millis{0};
  EXPECT_EQ(encode_fetch_summary_line(s),
            R"({"summary":{"elapsed_ms":61000,"failed":2,"ok":9998,"throttled_ms":0}})"
            "\n");
  EXPECT_EQ(encode_fetch_summary_line(s), dump(json{{"summary", reference(s)}}) + "\n");
  fmt::memory_buffer out;
  write_fetch_summary(out, s);
  EXPECT_EQ(fmt::to_string(out), dump(reference(s)));
}

}  // namespace
}  // namespace gatherd::service
