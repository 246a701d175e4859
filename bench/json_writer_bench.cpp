// The service's JSON writer (append_json) against nlohmann's dump(-1, ' ', false, replace), which
// it replaces and must match byte for byte. append_json writes into a buffer kept across
// iterations, as the service reuses its response buffers; to_json_text makes a new std::string
// each time, like dump, for the like-for-like figure.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "service/codec/json_text.hpp"

namespace {

using nlohmann::json;

json small_result() {
  return json{{"slept_ms", 100}};
}

json medium_object() {
  return json{{"id", "0f3c9a7e5b2d4c1a8e6f0b9d7c5a3e1f"},
              {"kind", "compute"},
              {"state", "succeeded"},
              {"attempts", 3},
              {"labels", {{"team", "ingest"}, {"env", "prod"}, {"shard", "eu-west-7"}}},
              {"result",
               {{"primes", json::array({2, 3, 5, 7, 11, 13, 17, 19, 23, 29})},
                {"count", 1229},
                {"n", 10000},
                {"ranges", json::array({json::array({0, 100}), json::array({100, 1000}),
                                        json::array({1000, 10000})})}}},
              {"cancel_requested", false},
              {"error", nullptr}};
}

// Shaped like write_fetch_result's output: a 4 KB ASCII body and ten headers.
json fetch_result() {
  std::string body;
  while (body.size() < 4096)
    body += "<p>The quick brown fox jumps over the lazy dog 0123456789.</p>";
  body.resize(4096);
  json headers = json::object();
  headers["cache-control"] = "max-age=3600, public";
  headers["content-length"] = "4096";
  headers["content-type"] = "text/html; charset=utf-8";
  headers["date"] = "Tue, 14 May 2024 09:12:44 GMT";
  headers["etag"] = "\"5f8d-61854e7c0b2c0\"";
  headers["last-modified"] = "Mon, 13 May 2024 17:01:02 GMT";
  headers["server"] = "nginx/1.22.1";
  headers["vary"] = "Accept-Encoding";
  headers["x-request-id"] = "c0ffee00-1234-4abc-9def-000000000042";
  headers["x-frame-options"] = "SAMEORIGIN";
  return json{{"attempts", 1},    {"body", body},       {"body_bytes", 4096},
              {"elapsed_ms", 37}, {"error", nullptr},   {"headers", headers},
              {"status", 200},    {"truncated", false}, {"url", "http://example.test/page?id=42"}};
}

json floats_and_unicode() {
  json points = json::array();
  for (int i = 0; i < 16; ++i) {
    points.push_back(
        {{"lat", 48.8566 + i * 0.0137}, {"lon", 2.3522 - i * 0.0071}, {"w", 1.0 / (i + 3)}});
  }
  return json{{"city", "Zürich — Genève, 東京, Москва 🚀"},
              {"note", "naïve café, œuvre, façade; ½ × ¾ ≈ 0.375"},
              {"points", points},
              {"ratio", 0.30000000000000004},
              {"scale", 6.02214076e23},
              {"tags", json::array({"größe", "ελληνικά", "עברית", "हिन्दी", "한국어"})}};
}

const json& document(int which) {
  static const json documents[] = {small_result(), medium_object(), fetch_result(),
                                   floats_and_unicode()};
  return documents[which];
}

void set_label(benchmark::State& state) {
  static const char* names[] = {"small_result", "medium_object", "fetch_result_4k",
                                "floats_unicode"};
  state.SetLabel(names[state.range(0)]);
}

void bm_append_json(benchmark::State& state) {
  const json& doc = document(static_cast<int>(state.range(0)));
  fmt::memory_buffer out;
  for (auto _ : state) {
    out.clear();
    gatherd::service::append_json(out, doc);
    benchmark::DoNotOptimize(out.data());
  }
  set_label(state);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
}

void bm_to_json_text(benchmark::State& state) {
  const json& doc = document(static_cast<int>(state.range(0)));
  std::size_t size = 0;
  for (auto _ : state) {
    std::string text = gatherd::service::to_json_text(doc);
    size = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  set_label(state);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

void bm_nlohmann_dump(benchmark::State& state) {
  const json& doc = document(static_cast<int>(state.range(0)));
  std::size_t size = 0;
  for (auto _ : state) {
    std::string text = doc.dump(-1, ' ', false, json::error_handler_t::replace);
    size = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  set_label(state);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

BENCHMARK(bm_append_json)->DenseRange(0, 3);
BENCHMARK(bm_to_json_text)->DenseRange(0, 3);
BENCHMARK(bm_nlohmann_dump)->DenseRange(0, 3);

// A benchmark of the wrong output measures nothing: check once that both agree.
[[maybe_unused]] const bool outputs_agree = [] {
  for (int i = 0; i < 4; ++i) {
    if (gatherd::service::to_json_text(document(i)) !=
        document(i).dump(-1, ' ', false, json::error_handler_t::replace)) {
      std::fprintf(stderr, "json_writer_bench: append_json and dump differ on document %d\n", i);
      std::abort();
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
