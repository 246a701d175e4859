// The one JSON writer of the service: everything gatherd puts on the wire as JSON text (job
// objects, results, problem bodies, log lines) is written by these functions into an
// fmt::memory_buffer, without building a temporary std::string per value.
//
// The reference is nlohmann's own serializer: for every value, append_json writes exactly the
// bytes of value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), and
// append_json_string exactly the bytes that call writes for a string value. That includes the
// short escapes \b \f \n \r \t, other control characters as \u00xx (lowercase hex), non-ASCII
// written as raw UTF-8, and invalid UTF-8 replaced by U+FFFD the way nlohmann replaces it. The
// randomized test (tests/unit/service/json_text_test.cpp) compares the two byte for byte.
#pragma once

#include <fmt/format.h>

#include <concepts>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace gatherd::service {

// Appends `s` as a JSON string literal: quoted, escaped, invalid UTF-8 replaced by U+FFFD.
void append_json_string(fmt::memory_buffer& out, std::string_view s);

// Appends `value` as compact JSON text, byte for byte as nlohmann's dump(-1, ' ', false,
// error_handler_t::replace) writes it.
void append_json(fmt::memory_buffer& out, const nlohmann::json& value);

// `value` as compact JSON text (the same bytes as append_json).
std::string to_json_text(const nlohmann::json& value);

// An integer in decimal, as nlohmann writes it. A template rather than int64/uint64 overloads so
// that an `int` or `unsigned` argument is not ambiguous between the two.
template <std::integral Int>
requires(!std::same_as<Int, bool>) inline void append_json_int(fmt::memory_buffer& out, Int value) {
  const fmt::format_int text(value);
  out.append(text.data(), text.data() + text.size());
}

// A double as nlohmann writes it: shortest round-trip digits, "null" for NaN and infinities.
void append_json_double(fmt::memory_buffer& out, double value);

}  // namespace gatherd::service
