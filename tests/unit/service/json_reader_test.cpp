// Strict reading of request bodies and query strings (service/codec/json_reader.hpp,
// query_reader.hpp): every refusal is a 400 naming the field or parameter.
#include "service/codec/json_reader.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"
#include "support/refusal.hpp"

namespace gatherd::service {
namespace {

using namespace test;

using params = std::vector<std::pair<std::string, std::string>>;

// ---- parse_json_body

TEST(ParseJsonBody, ParsesValues) {
  const json body = parse_json_body(R"({"a": [1, -2, 2.5, "x", true, null], "b": {"c": {}}})");
  EXPECT_EQ(body, json::parse(R"({"a":[1,-2,2.5,"x",true,null],"b":{"c":{}}})"));
  EXPECT_TRUE(body["a"][0].is_number_unsigned());  // non-negative integers, as nlohmann makes
  EXPECT_TRUE(body["a"][1].is_number_integer());
  EXPECT_FALSE(body["a"][1].is_number_unsigned());
  EXPECT_TRUE(body["a"][2].is_number_float());
  EXPECT_EQ(parse_json_body("18446744073709551615").get<std::uint64_t>(),
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(parse_json_body("-9223372036854775808").get<std::int64_t>(),
            std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(parse_json_body("\"caf\xC3\xA9\""), json("caf\xC3\xA9"));
  EXPECT_EQ(parse_json_body(" \n[]\t"), json::array());
}

TEST(ParseJsonBody, DoublesAreReadExactly) {
  // Boost.JSON 1.81's own tree parser read this one an ulp off (found by fuzz_json_text).
  for (const char* text : {"238.20188140736326", "0.1", "1e-320", "1e-400", "-0.0",
                           "1.7976931348623157e308", "123456789012345678901234567890"}) {
    EXPECT_EQ(parse_json_body(text), json::parse(text)) << text;
  }
}

TEST(ParseJsonBody, AKeyGivenTwiceIs400) {
  expect_400([] { parse_json_body(R"({"kind":"sleep","kind":"compute"})"); },
             "the body is not valid JSON: the key 'kind' appears twice in one object");
  expect_400([] { parse_json_body(R"([{"a":{"b":1,"b":1}}])"); },
             "the body is not valid JSON: the key 'b' appears twice in one object");
  EXPECT_EQ(parse_json_body(R"({"a":{"b":1},"b":{"a":2}})"),
            json::parse(R"({"a":{"b":1},"b":{"a":2}})"));  // the same key in other objects
}

TEST(ParseJsonBody, InvalidJsonIs400) {
  for (const char* text : {"", "{", "{\"a\":}", "[1,]", "{} x", "{'a':1}", "nul", "// c\n{}",
                           "{\"a\":1,}", "\"\xFF\""}) {
    expect_400([&] { parse_json_body(text); }, "the body is not valid JSON");
  }
}

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::string nested_objects(std::size_t depth) {
  std::string text;
  for (std::size_t i = 0; i < depth; ++i) text += "{\"a\":";
  text += "1";
  text += std::string(depth, '}');
  return text;
}

TEST(ParseJsonBody, DepthLimit) {
  EXPECT_NO_THROW(parse_json_body(nested_arrays(64)));
  EXPECT_NO_THROW(parse_json_body(nested_objects(64)));
  expect_400([] { parse_json_body(nested_arrays(65)); }, "the body nests deeper than 64 levels");
  expect_400([] { parse_json_body(nested_objects(65)); }, "the body nests deeper than 64 levels");
  expect_400([] { parse_json_body(nested_arrays(100000)); },
             "the body nests deeper than 64 levels");
}

TEST(ParseJsonBody, NumberOutOfRangeIs400) {
  for (const char* text : {"1e400", "[-1e400]", "{\"a\":{\"b\":1e999}}"}) {
    expect_400([&] { parse_json_body(text); },
               "the body is not valid JSON: a number is out of range");
  }
  EXPECT_DOUBLE_EQ(parse_json_body("1e300").get<double>(), 1e300);
}

// ---- require_json_body

http_request with_type(std::string type) {
  http_request req;
  req.content_type = std::move(type);
  return req;
}

TEST(RequireJsonBody, AcceptsJsonWithParameters) {
  for (const char* type :
       {"application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
        "Application/JSON", "application/json ; charset=utf-8"}) {
    EXPECT_NO_THROW(require_json_body(with_type(type))) << type;
  }
}

TEST(RequireJsonBody, OtherTypesAre415) {
  for (const char* type : {"text/plain", "", "application/jsonx", "application/problem+json",
                           "application/x-www-form-urlencoded", "json"}) {
    const request_error e = refusal([&] { require_json_body(with_type(type)); });
    EXPECT_EQ(e.status(), 415u) << type;
    EXPECT_EQ(e.code(), "unsupported_media_type");
    EXPECT_EQ(std::string(e.what()),
              "the body must be application/json (got '" + std::string(type) + "')");
  }
}

// ---- object_reader

TEST(ObjectReader, BodyMustBeAnObject) {
  const json array = json::array();
  expect_400([&] { object_reader(array, "", {"a"}); }, "the body must be a JSON object");
  const json number = 5;
  expect_400([&] { object_reader(number, "jobs[3]", {"a"}); },
             "field 'jobs[3]' must be a JSON object");
  const json null = nullptr;
  expect_400([&] { object_reader(null, "params", {"a"}); }, "field 'params' must be a JSON object");
}

TEST(ObjectReader, UnknownFieldIsNamed) {
  const json body = json::parse(R"({"a": 1, "timeout": 5})");
  expect_400([&] { object_reader(body, "", {"a", "timeout_ms"}); }, "unknown field 'timeout'");
  expect_400([&] { object_reader(body, "jobs[2].params", {"a"}); },
             "unknown field 'jobs[2].params.timeout'");
  EXPECT_NO_THROW(object_reader(body, "", {"a", "timeout", "other"}));
  const json empty = json::object();
  EXPECT_NO_THROW(object_reader(empty, "", {}));
}

TEST(ObjectReader, UnknownFieldComesBeforeAnyOtherError) {
  const json body = json::parse(R"({"n": "not a number", "zzz": 1})");
  expect_400([&] { object_reader(body, "", {"n"}); }, "unknown field 'zzz'");
}

TEST(ObjectReader, AbsentFieldsAreNullopt) {
  const json body = json::object();
  object_reader r(body, "", {"i", "n", "b", "s", "d", "o", "x"});
  EXPECT_FALSE(r.has("i"));
  EXPECT_EQ(r.raw("x"), nullptr);
  EXPECT_EQ(r.integer("i", 0, 10), std::nullopt);
  EXPECT_EQ(r.number("n", 0, 10), std::nullopt);
  EXPECT_EQ(r.boolean("b"), std::nullopt);
  EXPECT_EQ(r.string("s", 10), std::nullopt);
  EXPECT_EQ(r.duration("d", 10), std::nullopt);
  EXPECT_FALSE(r.object("o", {}).has_value());
}

TEST(ObjectReader, NullIsAWrongTypeNotAbsence) {
  const json body = json::parse(R"({"i":null,"n":null,"b":null,"s":null,"d":null,"o":null})");
  object_reader r(body, "p", {"i", "n", "b", "s", "d", "o"});
  EXPECT_TRUE(r.has("i"));
  ASSERT_NE(r.raw("i"), nullptr);
  EXPECT_TRUE(r.raw("i")->is_null());
  expect_400([&] { r.integer("i", 0, 10); }, "field 'p.i' must be an integer from 0 to 10");
  expect_400([&] { r.boolean("b"); }, "field 'p.b' must be true or false");
  expect_400([&] { r.string("s", 10); }, "field 'p.s' must be a string");
  expect_400([&] { r.duration("d", 1000); }, "field 'p.d' must be an integer from 0 to 1000");
  expect_400([&] { r.object("o", {}); }, "field 'p.o' must be a JSON object");
  const request_error e = refusal([&] { r.number("n", 0, 10); });
  EXPECT_EQ(e.status(), 400u);
  EXPECT_TRUE(std::string(e.what()).starts_with("field 'p.n' must be a number from ")) << e.what();
}

TEST(ObjectReader, Integers) {
  const json body = json::parse(
      R"({"plain": 42, "neg": -7, "whole": 100.0, "half": 100.5, "text": "5", "flag": true,
          "big": 18446744073709551615, "exp": 1e3, "low": -1, "high": 11})");
  object_reader r(body, "",
                  {"plain", "neg", "whole", "half", "text", "flag", "big", "exp", "low", "high"});
  EXPECT_EQ(r.integer("plain", 0, 100), 42);
  EXPECT_EQ(r.integer("neg", -10, 10), -7);
  EXPECT_EQ(r.integer("whole", 0, 1000), 100);  // 100.0 is an integer
  EXPECT_EQ(r.integer("exp", 0, 1000), 1000);
  EXPECT_EQ(r.integer("low", -1, 10), -1);
  EXPECT_EQ(r.integer("high", 0, 11), 11);
  expect_400([&] { r.integer("half", 0, 1000); }, "field 'half' must be an integer from 0 to 1000");
  expect_400([&] { r.integer("text", 0, 10); }, "field 'text' must be an integer from 0 to 10");
  expect_400([&] { r.integer("flag", 0, 10); }, "field 'flag' must be an integer from 0 to 10");
  expect_400([&] { r.integer("big", 0, 10); }, "field 'big' must be an integer from 0 to 10");
  expect_400([&] { r.integer("low", 0, 10); }, "field 'low' must be an integer from 0 to 10");
  expect_400([&] { r.integer("high", 0, 10); }, "field 'high' must be an integer from 0 to 10");
  expect_400([&] { r.integer("neg", 0, 10); }, "field 'neg' must be an integer from 0 to 10");
  expect_400([&] { r.integer("whole", 0, 99); }, "field 'whole' must be an integer from 0 to 99");
}

TEST(ObjectReader, IntegerAboveInt64IsRefused) {
  const json body = json::parse(R"({"big": 18446744073709551615})");
  object_reader r(body, "", {"big"});
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  expect_400([&] { r.integer("big", 0, max); },
             "field 'big' must be an integer from 0 to " + std::to_string(max));
}

TEST(ObjectReader, Numbers) {
  const json body = json::parse(R"({"f": 2.5, "i": 3, "s": "2", "low": 0.0001})");
  object_reader r(body, "rate", {"f", "i", "s", "low"});
  EXPECT_EQ(r.number("f", 0, 10), 2.5);
  EXPECT_EQ(r.number("i", 0, 10), 3.0);
  for (const char* key : {"s", "low"}) {
    const request_error e = refusal([&] { r.number(key, 0.001, 10); });
    EXPECT_EQ(e.status(), 400u);
    EXPECT_TRUE(std::string(e.what()).starts_with("field 'rate." + std::string(key) +
                                                  "' must be a number from "))
        << e.what();
  }
}

TEST(ObjectReader, BooleansStringsDurations) {
  const json body = json::parse(
      R"({"t": true, "f": false, "one": 1, "s": "abc", "long": "abcd", "n": 5, "d": 250, "neg": -1})");
  object_reader r(body, "x", {"t", "f", "one", "s", "long", "n", "d", "neg"});
  EXPECT_EQ(r.boolean("t"), true);
  EXPECT_EQ(r.boolean("f"), false);
  expect_400([&] { r.boolean("one"); }, "field 'x.one' must be true or false");
  EXPECT_EQ(r.string("s", 3), "abc");
  expect_400([&] { r.string("long", 3); }, "field 'x.long' must be at most 3 characters");
  expect_400([&] { r.string("n", 3); }, "field 'x.n' must be a string");
  EXPECT_EQ(r.duration("d", 1000), core::millis{250});
  expect_400([&] { r.duration("d", 100); }, "field 'x.d' must be an integer from 0 to 100");
  expect_400([&] { r.duration("neg", 100); }, "field 'x.neg' must be an integer from 0 to 100");
}

TEST(ObjectReader, NestedObjectPaths) {
  const json body = json::parse(R"({"retry": {"max_attempts": 0, "extra": 1}, "ok": {"a": 1}})");
  object_reader r(body, "jobs[1]", {"retry", "ok"});
  EXPECT_EQ(r.field("retry"), "jobs[1].retry");
  expect_400([&] { r.object("retry", {"max_attempts"}); }, "unknown field 'jobs[1].retry.extra'");
  auto retry = r.object("retry", {"max_attempts", "extra"});
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->field("max_attempts"), "jobs[1].retry.max_attempts");
  expect_400([&] { retry->integer("max_attempts", 1, 100); },
             "field 'jobs[1].retry.max_attempts' must be an integer from 1 to 100");
  auto ok = r.object("ok", {"a", "b"});
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->integer("a", 0, 1), 1);

  const json top = json::parse(R"({"rate": {"per_second": "x"}, "n": []})");
  object_reader t(top, "", {"rate", "n"});
  EXPECT_EQ(t.field("rate"), "rate");
  expect_400([&] { t.object("n", {}); }, "field 'n' must be a JSON object");
}

// ---- query_reader

TEST(QueryReader, SingleAllAndFinish) {
  const params p = {{"label", "a:1"}, {"state", "queued"}, {"label", "b:2"}};
  query_reader q(p);
  EXPECT_EQ(q.single("state"), "queued");
  EXPECT_EQ(q.all("label"), (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_EQ(q.single("kind"), std::nullopt);
  EXPECT_NO_THROW(q.finish());
}

TEST(QueryReader, RepeatedParameter) {
  const params p = {{"state", "queued"}, {"state", "running"}};
  query_reader q(p);
  expect_400([&] { q.single("state"); }, "query parameter 'state' is repeated");
  const params limits = {{"limit", "1"}, {"limit", "1"}};
  query_reader l(limits);
  expect_400([&] { l.integer("limit", 1, 10); }, "query parameter 'limit' is repeated");
}

TEST(QueryReader, UnknownParameter) {
  const params p = {{"state", "queued"}, {"sate", "x"}};
  query_reader q(p);
  q.single("state");
  expect_400([&] { q.finish(); }, "unknown query parameter 'sate'");
  // A parameter asked for but absent still counts as known.
  const params none = {};
  query_reader n(none);
  n.single("state");
  EXPECT_NO_THROW(n.finish());
  const params empty_name = {{"", "x"}};
  query_reader e(empty_name);
  expect_400([&] { e.finish(); }, "unknown query parameter ''");
}

TEST(QueryReader, Integers) {
  for (const char* good : {"1", "500", "1000", "0001"}) {
    const params p = {{"limit", good}};
    query_reader q(p);
    EXPECT_EQ(q.integer("limit", 1, 1000), std::stoll(good)) << good;
  }
  for (const char* bad :
       {"0", "1001", "-1", "abc", "10x", "", " 5", "5 ", "1.0", "+5", "99999999999999999999"}) {
    const params p = {{"limit", bad}};
    query_reader q(p);
    expect_400([&] { q.integer("limit", 1, 1000); },
               "query parameter 'limit' must be an integer from 1 to 1000");
  }
  const params absent = {};
  query_reader q(absent);
  EXPECT_EQ(q.integer("limit", 1, 1000), std::nullopt);
}

}  // namespace
}  // namespace gatherd::service
