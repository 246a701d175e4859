// The service's JSON writer against its reference, nlohmann's dump(-1, ' ', false, replace):
// hand-picked cases with the expected text spelled out, then random documents compared byte for
// byte.
#include "service/codec/json_text.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace gatherd::service {
namespace {

using nlohmann::json;

std::string reference(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string string_text(std::string_view s) {
  fmt::memory_buffer out;
  append_json_string(out, s);
  return fmt::to_string(out);
}

// Checks the expected text against both writers, so a wrong expectation shows up as well.
void expect_string(std::string_view input, std::string_view expected) {
  EXPECT_EQ(string_text(input), expected) << "input of " << input.size() << " bytes";
  EXPECT_EQ(reference(json(std::string(input))), expected) << "nlohmann disagrees";
}

void expect_value(const json& value, std::string_view expected) {
  EXPECT_EQ(to_json_text(value), expected);
  EXPECT_EQ(reference(value), expected) << "nlohmann disagrees";
}

const std::string fffd = "\xEF\xBF\xBD";

TEST(JsonText, ShortEscapes) {
  expect_string("a\bb\fc\nd\re\tf", R"("a\bb\fc\nd\re\tf")");
  expect_string("\"", R"("\"")");
  expect_string("\\", R"("\\")");
  expect_string("say \"hi\" \\o/", R"("say \"hi\" \\o/")");
  expect_string("/", R"("/")");  // not escaped
}

TEST(JsonText, OtherControlsAreLowercaseUnicodeEscapes) {
  expect_string(std::string_view("\0", 1), R"("\u0000")");
  expect_string("\x01\x07\x0b\x0e\x1a\x1f", R"("\u0001\u0007\u000b\u000e\u001a\u001f")");
  expect_string("\x7f", "\"\x7f\"");  // DEL is not a control character for JSON
  for (int c = 0; c < 0x20; ++c) {
    const std::string input(1, static_cast<char>(c));
    EXPECT_EQ(string_text(input), reference(json(input))) << "byte " << c;
  }
}

TEST(JsonText, PlainAndEmpty) {
  expect_string("", R"("")");
  expect_string("hello, world", R"("hello, world")");
  // Longer than a word, with the special byte at every offset of the last word.
  for (std::size_t at = 0; at < 24; ++at) {
    std::string input(24, 'x');
    input[at] = '"';
    EXPECT_EQ(string_text(input), reference(json(input))) << "quote at " << at;
    input[at] = '\x1f';
    EXPECT_EQ(string_text(input), reference(json(input))) << "control at " << at;
    input[at] = '\\';
    EXPECT_EQ(string_text(input), reference(json(input))) << "backslash at " << at;
    input[at] = '\x80';
    EXPECT_EQ(string_text(input), reference(json(input))) << "continuation byte at " << at;
    input[at] = '\xc3';
    EXPECT_EQ(string_text(input), reference(json(input))) << "lead byte at " << at;
  }
}

TEST(JsonText, ValidUtf8IsCopied) {
  expect_string("\xc2\x80", "\"\xc2\x80\"");                  // U+0080
  expect_string("caf\xc3\xa9", "\"caf\xc3\xa9\"");            // é
  expect_string("\xdf\xbf", "\"\xdf\xbf\"");                  // U+07FF
  expect_string("\xe0\xa0\x80", "\"\xe0\xa0\x80\"");          // U+0800
  expect_string("\xe2\x82\xac", "\"\xe2\x82\xac\"");          // €
  expect_string("\xed\x9f\xbf", "\"\xed\x9f\xbf\"");          // U+D7FF, below the surrogates
  expect_string("\xee\x80\x80", "\"\xee\x80\x80\"");          // U+E000, above them
  expect_string("\xef\xbf\xbf", "\"\xef\xbf\xbf\"");          // U+FFFF
  expect_string("\xf0\x90\x80\x80", "\"\xf0\x90\x80\x80\"");  // U+10000
  expect_string("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");  // 😀
  expect_string("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");  // U+10FFFF
  expect_string("\xe6\x97\xa5\xe6\x9c\xac\n", "\"\xe6\x97\xa5\xe6\x9c\xac\\n\"");
}

TEST(JsonText, InvalidUtf8IsReplaced) {
  // A lone continuation byte, or a byte that can never start a sequence: one U+FFFD each.
  expect_string("\x80", "\"" + fffd + "\"");
  expect_string(
      "a\xbf"
      "b",
      "\"a" + fffd + "b\"");
  expect_string("\x80\x80", "\"" + fffd + fffd + "\"");
  expect_string("\xf5\xff\xfe", "\"" + fffd + fffd + fffd + "\"");
  // Overlong forms: C0 and C1 can start nothing; after E0 and F0 the second byte is out of
  // range, so the lead is replaced and each following byte stands alone.
  expect_string("\xc0\xaf", "\"" + fffd + fffd + "\"");
  expect_string("\xc1\xbf", "\"" + fffd + fffd + "\"");
  expect_string("\xe0\x80\xaf", "\"" + fffd + fffd + fffd + "\"");
  expect_string("\xf0\x80\x80\xaf", "\"" + fffd + fffd + fffd + fffd + "\"");
  // UTF-16 surrogates (U+D800, U+DFFF) and beyond U+10FFFF.
  expect_string("\xed\xa0\x80", "\"" + fffd + fffd + fffd + "\"");
  expect_string("\xed\xbf\xbf", "\"" + fffd + fffd + fffd + "\"");
  expect_string("\xf4\x90\x80\x80", "\"" + fffd + fffd + fffd + fffd + "\"");
  // A sequence cut short by the end of the string: one U+FFFD for what was there.
  expect_string("ab\xc3", "\"ab" + fffd + "\"");
  expect_string("ab\xe2\x82", "\"ab" + fffd + "\"");
  expect_string("ab\xf0\x9f\x98", "\"ab" + fffd + "\"");
  expect_string("\xf0", "\"" + fffd + "\"");
  // Cut short by a byte that does not continue it: one U+FFFD, and that byte is read again.
  expect_string(
      "\xe2\x82"
      "abc",
      "\"" + fffd + "abc\"");
  expect_string("\xf0\x9f\x98\"x", "\"" + fffd + "\\\"x\"");
  expect_string("\xc3\xc3\xa9", "\"" + fffd + "\xc3\xa9\"");
  expect_string("\xe2\xf0\x9f\x98\x80", "\"" + fffd + "\xf0\x9f\x98\x80\"");
  expect_string("\xe2\x82\n", "\"" + fffd + "\\n\"");
  // Invalid bytes in the middle of valid text.
  expect_string("caf\xe9 au lait \xe2\x82\xac 3", "\"caf" + fffd + " au lait \xe2\x82\xac 3\"");
  expect_string("x\xff\xc3\xa9y", "\"x" + fffd + "\xc3\xa9y\"");
}

TEST(JsonText, LongStringsAcrossNlohmannsBuffer) {
  // nlohmann escapes through a 512-byte buffer; odd bytes near its edges must not matter.
  for (std::size_t prefix = 490; prefix < 520; ++prefix) {
    for (const std::string tail : {"\xe2\x82", "\xe2\x82x", "\x01", "\xf0\x9f\x98\x80", "\xc0"}) {
      const std::string input = std::string(prefix, 'a') + tail + std::string(30, 'b');
      EXPECT_EQ(string_text(input), reference(json(input))) << prefix;
    }
  }
}

TEST(JsonText, Literals) {
  expect_value(nullptr, "null");
  expect_value(true, "true");
  expect_value(false, "false");
  expect_value(json::array(), "[]");
  expect_value(json::object(), "{}");
  expect_value(json::parse(R"({"b":[1,{"z":null,"a":"x"}],"a":-2})"),
               R"({"a":-2,"b":[1,{"a":"x","z":null}]})");
}

TEST(JsonText, Integers) {
  expect_value(0, "0");
  expect_value(-1, "-1");
  expect_value(std::numeric_limits<std::int64_t>::min(), "-9223372036854775808");
  expect_value(std::numeric_limits<std::int64_t>::max(), "9223372036854775807");
  expect_value(std::numeric_limits<std::uint64_t>::max(), "18446744073709551615");
  fmt::memory_buffer out;
  append_json_int(out, 42);
  append_json_int(out, 7u);
  EXPECT_EQ(fmt::to_string(out), "427");
}

TEST(JsonText, Doubles) {
  expect_value(0.0, "0.0");
  expect_value(-0.0, "-0.0");
  expect_value(1.0, "1.0");
  expect_value(-1.0, "-1.0");
  expect_value(0.1, "0.1");
  expect_value(1e15, "1e+15");
  expect_value(1e16, "1e+16");
  expect_value(1e-5, "1e-05");
  expect_value(1e-4, "0.0001");
  expect_value(123.456, "123.456");
  expect_value(0.30000000000000004, "0.30000000000000004");
  expect_value(9007199254740993.0, "9.007199254740992e+15");
  expect_value(DBL_MAX, "1.7976931348623157e+308");
  expect_value(-DBL_MAX, "-1.7976931348623157e+308");
  expect_value(DBL_MIN, "2.2250738585072014e-308");
  expect_value(std::numeric_limits<double>::denorm_min(), "5e-324");
  expect_value(2.2250738585072009e-308, "2.225073858507201e-308");  // largest denormal
  expect_value(std::numeric_limits<double>::quiet_NaN(), "null");
  expect_value(-std::numeric_limits<double>::quiet_NaN(), "null");
  expect_value(std::numeric_limits<double>::infinity(), "null");
  expect_value(-std::numeric_limits<double>::infinity(), "null");
}

TEST(JsonText, Binary) {
  expect_value(json::binary({1, 2, 255}), R"({"bytes":[1,2,255],"subtype":null})");
  expect_value(json::binary({}, 42), R"({"bytes":[],"subtype":42})");
}

// Random documents, weighted toward what is hard to get right.
class document_generator {
 public:
  explicit document_generator(std::uint64_t seed) : rng_(seed) {}

  json document(int depth = 0) {
    const int kind = depth >= 6 ? pick(0, 5) : pick(0, 7);
    switch (kind) {
      case 0:
        return random_string();
      case 1:
        return random_double();
      case 2:
        return random_integer();
      case 3:
        return pick(0, 1) == 1;
      case 4:
        return nullptr;
      case 5:
        return pick(0, 30) == 0 ? random_binary() : json(random_string());
      case 6: {
        json array = json::array();
        for (int i = pick(0, 6); i > 0; --i) array.push_back(document(depth + 1));
        return array;
      }
      default: {
        json object = json::object();
        for (int i = pick(0, 6); i > 0; --i) object[random_string()] = document(depth + 1);
        return object;
      }
    }
  }

  std::string random_string() {
    std::string s;
    // Mostly short, sometimes long enough to cross nlohmann's 512-byte buffer.
    const int pieces = pick(0, 9) == 0 ? pick(0, 400) : pick(0, 12);
    for (int i = 0; i < pieces; ++i) add_piece(s);
    return s;
  }

  double random_double() {
    switch (pick(0, 5)) {
      case 0: {
        // Any bit pattern: NaNs, infinities, denormals, huge and tiny exponents.
        const std::uint64_t bits = rng_();
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return d;
      }
      case 1:  // "nice" decimals, as people write them
        return static_cast<double>(pick(-1'000'000, 1'000'000)) / pow10(pick(0, 8));
      case 2:  // integers stored as doubles, around the %g switch to exponents
        return static_cast<double>(pick(-9, 9)) * pow10(pick(0, 25));
      case 3:
        return std::ldexp(static_cast<double>(pick(1, 1 << 20)), pick(-1100, 1000));
      case 4:
        return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
      default: {
        static constexpr double specials[] = {0.0,
                                              -0.0,
                                              1e-5,
                                              1e-4,
                                              1e15,
                                              1e16,
                                              1e17,
                                              DBL_MAX,
                                              DBL_MIN,
                                              std::numeric_limits<double>::denorm_min(),
                                              std::numeric_limits<double>::infinity(),
                                              std::numeric_limits<double>::quiet_NaN()};
        return specials[pick(0, static_cast<int>(std::size(specials)) - 1)] * (pick(0, 1) ? 1 : -1);
      }
    }
  }

  json random_integer() {
    const std::uint64_t bits = rng_() >> pick(0, 63);
    switch (pick(0, 2)) {
      case 0:
        return static_cast<std::int64_t>(bits);
      case 1:
        return -static_cast<std::int64_t>(bits >> 1) - pick(0, 1);
      default:
        return bits;  // number_unsigned
    }
  }

  json random_binary() {
    std::vector<std::uint8_t> bytes(pick(0, 8));
    for (auto& b : bytes) b = static_cast<std::uint8_t>(rng_());
    if (pick(0, 1)) return json::binary(std::move(bytes));
    return json::binary(std::move(bytes), rng_() >> pick(0, 63));
  }

 private:
  int pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng_); }

  static double pow10(int n) {
    double p = 1;
    while (n-- > 0) p *= 10;
    return p;
  }

  static void add_utf8(std::string& s, std::uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xc0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xe0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      s += static_cast<char>(0xf0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  std::uint32_t random_code_point() {
    static constexpr std::uint32_t edges[] = {0x80,   0x7ff,  0x800,   0xd7ff,   0xe000,
                                              0xfffd, 0xffff, 0x10000, 0x10ffff, 0x1f600};
    switch (pick(0, 3)) {
      case 0:
        return edges[pick(0, static_cast<int>(std::size(edges)) - 1)];
      case 1:
        return static_cast<std::uint32_t>(pick(0x80, 0x7ff));
      case 2: {
        const auto cp = static_cast<std::uint32_t>(pick(0x800, 0xffff));
        return cp >= 0xd800 && cp <= 0xdfff ? cp + 0x800 : cp;
      }
      default:
        return static_cast<std::uint32_t>(pick(0x10000, 0x10ffff));
    }
  }

  void add_piece(std::string& s) {
    switch (pick(0, 13)) {
      case 0:
      case 1:
      case 2: {  // a run of plain ASCII
        for (int n = pick(1, 20); n > 0; --n) s += static_cast<char>(pick(0x20, 0x7e));
        break;
      }
      case 3:  // a control character, DEL, quote or backslash
        s += "\"\\\x7f\b\f\n\r\t"[pick(0, 7)];
        break;
      case 4:
        s += static_cast<char>(pick(0, 0x1f));
        break;
      case 5:
      case 6:  // a valid character
        add_utf8(s, random_code_point());
        break;
      case 7: {  // a valid character cut short
        std::string c;
        add_utf8(c, random_code_point());
        s += c.substr(0, pick(1, static_cast<int>(c.size()) - 1));
        break;
      }
      case 8:  // a lone continuation byte, or a byte that starts nothing
        s += static_cast<char>(pick(0, 1) ? pick(0x80, 0xbf) : pick(0xc0, 0xff));
        break;
      case 9: {  // an overlong form
        static constexpr const char* overlong[] = {"\xc0\x80",         "\xc1\xbf",
                                                   "\xe0\x80\x80",     "\xe0\x9f\xbf",
                                                   "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf"};
        s += overlong[pick(0, static_cast<int>(std::size(overlong)) - 1)];
        break;
      }
      case 10: {  // an encoded UTF-16 surrogate, or a code point above U+10FFFF
        if (pick(0, 1)) {
          s += '\xed';
          s += static_cast<char>(pick(0xa0, 0xbf));
          s += static_cast<char>(pick(0x80, 0xbf));
        } else {
          s += static_cast<char>(pick(0xf4, 0xf7));
          s += static_cast<char>(pick(0x90, 0xbf));
          s += static_cast<char>(pick(0x80, 0xbf));
          s += static_cast<char>(pick(0x80, 0xbf));
        }
        break;
      }
      case 11: {  // a lead byte with random followers
        s += static_cast<char>(pick(0xc2, 0xf4));
        for (int n = pick(0, 3); n > 0; --n) s += static_cast<char>(pick(0x70, 0xc5));
        break;
      }
      default:  // any byte at all
        s += static_cast<char>(rng_());
        break;
    }
  }

  std::mt19937_64 rng_;
};

constexpr std::uint64_t random_seed = 0x6a736f6e74657874;  // "jsontext"

TEST(JsonText, RandomDocumentsMatchNlohmann) {
  constexpr int documents = 25'000;
  int compared = 0;
  int mismatches = 0;
  std::size_t bytes_compared = 0;
  std::size_t replacements = 0;  // U+FFFD written
  std::size_t unicode_escapes = 0;
  std::size_t exponents = 0;
  fmt::memory_buffer out;
  for (int i = 0; i < documents; ++i) {
    // Each document from its own seed, so that a failure can be replayed alone.
    document_generator generate(random_seed + static_cast<std::uint64_t>(i));
    const json doc = generate.document();
    out.clear();
    append_json(out, doc);
    const std::string ours = fmt::to_string(out);
    const std::string theirs = reference(doc);
    ++compared;
    bytes_compared += theirs.size();
    for (std::size_t at = theirs.find(fffd); at != std::string::npos;
         at = theirs.find(fffd, at + 1)) {
      ++replacements;
    }
    for (std::size_t at = theirs.find("\\u00"); at != std::string::npos;
         at = theirs.find("\\u00", at + 1)) {
      ++unicode_escapes;
    }
    for (std::size_t at = theirs.find("e+"); at != std::string::npos;
         at = theirs.find("e+", at + 1)) {
      ++exponents;
    }
    if (ours != theirs && ++mismatches <= 5) {
      const auto first = std::mismatch(ours.begin(), ours.end(), theirs.begin(), theirs.end());
      ADD_FAILURE() << "document " << i << " (seed " << random_seed << " + " << i
                    << ") differs from byte " << (first.first - ours.begin())
                    << "\n  append_json: " << ours << "\n  nlohmann:    " << theirs;
    }
  }
  EXPECT_EQ(mismatches, 0);
  // The comparison must have run over enough text, and the text must have held the hard parts.
  EXPECT_EQ(compared, documents);
  EXPECT_GT(bytes_compared, 5'000'000u);
  EXPECT_GT(replacements, 20'000u);
  EXPECT_GT(unicode_escapes, 20'000u);
  EXPECT_GT(exponents, 1'000u);
  std::printf("[          ] %d documents, %zu bytes compared; %zu U+FFFD, %zu \\u00xx, %zu e+\n",
              compared, bytes_compared, replacements, unicode_escapes, exponents);
}

TEST(JsonText, RandomStringsMatchNlohmann) {
  document_generator generate(random_seed);
  std::size_t bytes_compared = 0;
  for (int i = 0; i < 50'000; ++i) {
    const std::string s = generate.random_string();
    const std::string theirs = reference(json(s));
    ASSERT_EQ(string_text(s), theirs) << "string " << i;
    bytes_compared += theirs.size();
  }
  EXPECT_GT(bytes_compared, 1'000'000u);
}

TEST(JsonText, RandomDoublesMatchNlohmann) {
  document_generator generate(random_seed);
  fmt::memory_buffer out;
  for (int i = 0; i < 200'000; ++i) {
    const double d = generate.random_double();
    out.clear();
    append_json_double(out, d);
    ASSERT_EQ(fmt::to_string(out), reference(json(d))) << "double " << i;
  }
}

}  // namespace
}  // namespace gatherd::service
