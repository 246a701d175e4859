#include "service/codec/json_text.hpp"

#include <array>
#include <cmath>
#include <cstring>

namespace gatherd::service {

namespace {

using nlohmann::json;

void append(fmt::memory_buffer& out, std::string_view text) {
  out.append(text.data(), text.data() + text.size());
}

// Bytes that nlohmann copies through unchanged on their own: printable ASCII and DEL, except the
// quote and the backslash. Everything else is either escaped (controls, quote, backslash) or
// part of a multi-byte sequence that must be validated first (0x80 and up).
constexpr std::array<bool, 256> plain_bytes = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

constexpr std::uint64_t ones = 0x0101010101010101;
constexpr std::uint64_t highs = 0x8080808080808080;

// Whether one of the eight bytes of `w` is not plain. The usual word-at-a-time tests: a byte
// below n (n <= 0x80) borrows into its high bit in w - n*ones, and a byte equal to x is a byte
// below 1 of w ^ x*ones. Borrows can flag bytes after a real hit, never without one, so the
// answer for the word as a whole is exact.
bool has_special(std::uint64_t w) {
  const std::uint64_t quote = w ^ (ones * '"');
  const std::uint64_t backslash = w ^ (ones * '\\');
  const std::uint64_t below_space = (w - ones * 0x20) & ~w;
  const std::uint64_t is_quote = (quote - ones) & ~quote;
  const std::uint64_t is_backslash = (backslash - ones) & ~backslash;
  return ((below_space | is_quote | is_backslash | w) & highs) != 0;
}

// The length of the run of plain bytes at the start of [p, p + n). Request bodies and fetched
// pages are mostly such runs, so they are skipped eight bytes at a time.
std::size_t plain_run(const unsigned char* p, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, sizeof w);
    if (has_special(w)) break;
  }
  while (i < n && plain_bytes[p[i]]) ++i;
  return i;
}

// For a byte c >= 0x80 at the start of [p, p + n): the length of the well-formed UTF-8 sequence
// it starts, or 0 when it does not start one. Then `*skip` is how many bytes nlohmann's decoder
// (a Hoehrmann DFA, serializer::decode) takes in before it gives up: one U+FFFD stands for the
// lead byte and the continuation bytes it accepted; the byte it rejected is not taken, it is read
// again as the start of the next character. A lead byte that can start nothing (80..C1, F5..FF)
// is taken alone. A sequence cut off by the end of the string is also one U+FFFD.
std::size_t utf8_sequence(const unsigned char* p, std::size_t n, std::size_t* skip) {
  const unsigned char lead = p[0];
  std::size_t length;
  // The range allowed for the second byte excludes overlong forms (E0, F0), UTF-16 surrogates
  // (ED) and code points above U+10FFFF (F4).
  unsigned char low = 0x80;
  unsigned char high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    *skip = 1;
    return 0;
  }
  std::size_t k = 1;
  if (k < n && p[k] >= low && p[k] <= high) {
    ++k;
    while (k < length && k < n && (p[k] & 0xc0) == 0x80) ++k;
  }
  if (k == length) return length;
  *skip = k;
  return 0;
}

void append_escaped(fmt::memory_buffer& out, unsigned char c) {
  static constexpr char hex[] = "0123456789abcdef";
  switch (c) {
    case '"':
      append(out, "\\\"");
      break;
    case '\\':
      append(out, "\\\\");
      break;
    case '\b':
      append(out, "\\b");
      break;
    case '\f':
      append(out, "\\f");
      break;
    case '\n':
      append(out, "\\n");
      break;
    case '\r':
      append(out, "\\r");
      break;
    case '\t':
      append(out, "\\t");
      break;
    default: {
      // The other control characters, as nlohmann's "\\u%04x".
      const char text[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
      out.append(text, text + sizeof text);
    }
  }
}

}  // namespace

void append_json_string(fmt::memory_buffer& out, std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  out.push_back('"');
  // Bytes from `copied` to `i` go out unchanged; they are appended in one piece when something
  // has to be written differently, or at the end.
  std::size_t copied = 0;
  std::size_t i = 0;
  for (;;) {
    i += plain_run(p + i, n - i);
    if (i == n) break;
    if (p[i] < 0x80) {
      out.append(s.data() + copied, s.data() + i);
      append_escaped(out, p[i]);
      copied = ++i;
      continue;
    }
    std::size_t skip = 0;
    if (const std::size_t length = utf8_sequence(p + i, n - i, &skip)) {
      i += length;  // valid UTF-8 is copied as it is
      continue;
    }
    out.append(s.data() + copied, s.data() + i);
    append(out, "\xEF\xBF\xBD");  // U+FFFD
    i += skip;
    copied = i;
  }
  out.append(s.data() + copied, s.data() + n);
  out.push_back('"');
}

void append_json_double(fmt::memory_buffer& out, double value) {
  if (!std::isfinite(value)) {
    append(out, "null");
    return;
  }
  // nlohmann's own routine (Grisu2, then printf-%g-like layout, "x.0" for integral values),
  // called as serializer::dump_float calls it for an IEEE double, with a buffer of the same size:
  // reimplementing the shortest-digits search would be a second algorithm to keep in step.
  std::array<char, 64> buffer;
  char* end = nlohmann::detail::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  out.append(buffer.data(), end);
}

void append_json(fmt::memory_buffer& out, const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      append(out, "null");
      return;
    case json::value_t::boolean:
      append(out, value.get_ref<const json::boolean_t&>() ? "true" : "false");
      return;
    case json::value_t::number_integer:
      append_json_int(out, value.get_ref<const json::number_integer_t&>());
      return;
    case json::value_t::number_unsigned:
      append_json_int(out, value.get_ref<const json::number_unsigned_t&>());
      return;
    case json::value_t::number_float:
      append_json_double(out, value.get_ref<const json::number_float_t&>());
      return;
    case json::value_t::string:
      append_json_string(out, value.get_ref<const json::string_t&>());
      return;
    case json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const json& item : value.get_ref<const json::array_t&>()) {
        if (!first) out.push_back(',');
        first = false;
        append_json(out, item);
      }
      out.push_back(']');
      return;
    }
    case json::value_t::object: {
      // object_t is a std::map: its order is the sorted key order dump() writes.
      out.push_back('{');
      bool first = true;
      for (const auto& [key, item] : value.get_ref<const json::object_t&>()) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, key);
        out.push_back(':');
        append_json(out, item);
      }
      out.push_back('}');
      return;
    }
    case json::value_t::binary: {
      // Bodies parsed from JSON text never hold binary values; only code building a json by
      // hand could make one. Written as dump() writes it all the same.
      const json::binary_t& binary = value.get_binary();
      append(out, "{\"bytes\":[");
      bool first = true;
      for (const std::uint8_t byte : binary) {
        if (!first) out.push_back(',');
        first = false;
        append_json_int(out, byte);
      }
      append(out, "],\"subtype\":");
      if (binary.has_subtype()) {
        append_json_int(out, binary.subtype());
      } else {
        append(out, "null");
      }
      out.push_back('}');
      return;
    }
    case json::value_t::discarded:
      // Only a parser callback leaves these behind; dump() writes this marker.
      append(out, "<discarded>");
      return;
  }
}

std::string to_json_text(const json& value) {
  fmt::memory_buffer out;
  append_json(out, value);
  return fmt::to_string(out);
}

}  // namespace gatherd::service
