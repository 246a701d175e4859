// POST /v1/gather's codec (service/codec/gather_codec.hpp): options, entries, summary fields.
#include "service/codec/gather_codec.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "service/codec/json_reader.hpp"
#include "service/http/problem.hpp"
#include "support/refusal.hpp"

namespace gatherd::service {
namespace {

using namespace test;

// The options of a gather body, read as the handler reads them.
core::gather_options options_of(const std::string& text) {
  const json body = parse_json_body(text);
  object_reader r(body, "",
                  {"jobs", "return_when", "return_exceptions", "cancel_on_error", "cancel_pending",
                   "timeout_ms"});
  return parse_gather_options(r);
}

const std::string id_text = "000102030405060708090a0b0c0d0e0f";

core::job_id test_id() {
  core::job_id id;
  for (std::size_t i = 0; i < id.bytes.size(); ++i) id.bytes[i] = static_cast<std::uint8_t>(i);
  return id;
}

TEST(GatherOptions, Defaults) {
  const core::gather_options o = options_of(R"({"jobs": []})");
  EXPECT_EQ(o.when, core::return_when::all_completed);
  EXPECT_TRUE(o.return_exceptions);
  EXPECT_FALSE(o.cancel_on_error);
  EXPECT_FALSE(o.cancel_pending);
  EXPECT_EQ(o.timeout, std::nullopt);
}

TEST(GatherOptions, Values) {
  EXPECT_EQ(options_of(R"({"return_when": "all_completed"})").when,
            core::return_when::all_completed);
  EXPECT_EQ(options_of(R"({"return_when": "first_completed"})").when,
            core::return_when::first_completed);
  EXPECT_EQ(options_of(R"({"return_when": "first_exception"})").when,
            core::return_when::first_exception);
  const core::gather_options o = options_of(
      R"({"return_exceptions": false, "cancel_on_error": true, "cancel_pending": true,
          "timeout_ms": 5000})");
  EXPECT_FALSE(o.return_exceptions);
  EXPECT_TRUE(o.cancel_on_error);
  EXPECT_TRUE(o.cancel_pending);
  EXPECT_EQ(o.timeout, core::millis{5000});
  EXPECT_EQ(options_of(R"({"timeout_ms": 0})").timeout, core::millis{0});
}

TEST(GatherOptions, Refusals) {
  const std::string when =
      "field 'return_when' must be one of all_completed, first_completed, first_exception";
  for (const char* text : {R"({"return_when": "sometimes"})", R"({"return_when": ""})",
                           R"({"return_when": "ALL_COMPLETED"})"}) {
    expect_error([&] { options_of(text); }, 400, "invalid_request", when);
  }
  expect_error([] { options_of(R"({"return_when": 1})"); }, 400, "invalid_request",
               "field 'return_when' must be a string");
  expect_error([] { options_of(R"({"cancel_pending": "yes"})"); }, 400, "invalid_request",
               "field 'cancel_pending' must be true or false");
  expect_error([] { options_of(R"({"timeout_ms": -1})"); }, 400, "invalid_request",
               "field 'timeout_ms' must be an integer from 0 to 86400000");
  expect_error([] { options_of(R"({"timeout_ms": 86400001})"); }, 400, "invalid_request",
               "field 'timeout_ms' must be an integer from 0 to 86400000");
  expect_error([] { options_of(R"({"timeout": 5})"); }, 400, "invalid_request",
               "unknown field 'timeout'");
}

TEST(GatherEntry, ExistingJobId) {
  const core::gather_entry entry = parse_gather_entry(json(id_text), 0, spec_limits{});
  ASSERT_TRUE(std::holds_alternative<core::job_id>(entry));
  EXPECT_EQ(std::get<core::job_id>(entry), test_id());
}

TEST(GatherEntry, MalformedIdIs404) {
  expect_error([] { parse_gather_entry(json("abc"), 3, spec_limits{}); }, 404, "not_found",
               "no job abc (jobs[3])");
  // Upper case, one digit short, one too many: not an id gatherd gives out.
  std::string upper = id_text;
  upper[31] = 'F';
  expect_error([&] { parse_gather_entry(json(upper), 0, spec_limits{}); }, 404, "not_found",
               "no job " + upper + " (jobs[0])");
  const std::string short_id = id_text.substr(1);
  expect_error([&] { parse_gather_entry(json(short_id), 1, spec_limits{}); }, 404, "not_found",
               "no job " + short_id + " (jobs[1])");
  expect_error([&] { parse_gather_entry(json(id_text + "0"), 2, spec_limits{}); }, 404, "not_found",
               "no job " + id_text + "0 (jobs[2])");
  expect_error([] { parse_gather_entry(json(""), 7, spec_limits{}); }, 404, "not_found",
               "no job  (jobs[7])");
}

TEST(GatherEntry, InlineSpec) {
  const json spec = parse_json_body(
      R"({"kind": "sleep", "params": {"duration_ms": 20}, "labels": {"team": "a"}})");
  const core::gather_entry entry = parse_gather_entry(spec, 4, spec_limits{});
  ASSERT_TRUE(std::holds_alternative<core::job_spec>(entry));
  const core::job_spec& s = std::get<core::job_spec>(entry);
  EXPECT_EQ(s.kind(), core::job_kind::sleep);
  EXPECT_EQ(std::get<core::sleep_params>(s.params).duration, core::millis{20});
  EXPECT_EQ(s.labels, (core::job_labels{{"team", "a"}}));
}

TEST(GatherEntry, InlineSpecErrorsNameTheEntry) {
  const json typo = parse_json_body(R"({"kind": "sleep", "params": {"durationms": 20}})");
  expect_error([&] { parse_gather_entry(typo, 2, spec_limits{}); }, 400, "invalid_request",
               "unknown field 'jobs[2].params.durationms'");
  const json no_kind = parse_json_body(R"({"params": {}})");
  expect_error([&] { parse_gather_entry(no_kind, 5, spec_limits{}); }, 400, "invalid_request",
               "field 'jobs[5].kind' is required");
}

TEST(GatherEntry, OtherValuesAre400) {
  for (const char* text : {"5", "null", "true", "[]", "1.5"}) {
    expect_error([&] { parse_gather_entry(parse_json_body(text), 3, spec_limits{}); }, 400,
                 "invalid_request",
                 "field 'jobs[3]' must be a job id (string) or a job spec (object)");
  }
}

std::string summary_fields(const core::gather_result& result) {
  fmt::memory_buffer out;
  write_gather_summary_fields(out, result);
  return fmt::to_string(out);
}

TEST(GatherSummary, WithoutFirstError) {
  core::gather_result result;
  result.outcome = core::gather_outcome::completed;
  result.elapsed = core::millis{1234};
  result.done = {2, 0, 1};
  const std::string text = summary_fields(result);
  EXPECT_EQ(text, R"("outcome":"completed","elapsed_ms":1234,"done":[2,0,1],"pending":[],)"
                  R"("first_error":null)");
  const json doc = json::parse("{" + text + "}");
  EXPECT_EQ(doc.at("done"), json::parse("[2,0,1]"));
}

TEST(GatherSummary, WithFirstError) {
  core::gather_result result;
  result.outcome = core::gather_outcome::failed;
  result.elapsed = core::millis{15};
  result.done = {1};
  result.pending = {0, 2};
  result.first_error = core::gather_error{1, test_id(), {"failed", "boom \"x\"\n"}};
  const std::string text = summary_fields(result);
  EXPECT_EQ(text, R"("outcome":"failed","elapsed_ms":15,"done":[1],"pending":[0,2],)"
                  R"("first_error":{"index":1,"id":")" +
                      id_text + R"(","error":{"type":"failed","message":"boom \"x\"\n"}})");
  const json doc = json::parse("{" + text + "}");
  EXPECT_EQ(doc.at("first_error").at("error").at("message"), "boom \"x\"\n");
}

TEST(GatherSummary, Outcomes) {
  core::gather_result result;
  result.outcome = core::gather_outcome::timed_out;
  result.pending = {0};
  EXPECT_EQ(summary_fields(result),
            R"("outcome":"timed_out","elapsed_ms":0,"done":[],"pending":[0],"first_error":null)");
  result.outcome = core::gather_outcome::abandoned;
  EXPECT_TRUE(summary_fields(result).starts_with(R"("outcome":"abandoned",)"));
}

}  // namespace
}  // namespace gatherd::service
