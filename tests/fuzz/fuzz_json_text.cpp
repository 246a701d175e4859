// The service's one JSON writer (service/codec/json_text) against its reference, nlohmann's
// serializer, and the request reader (codec/json_reader: Boost.JSON into nlohmann values)
// against nlohmann's own parser. The first byte chooses:
//   0  the rest as a string (any bytes): append_json_string == dump with replacement
//   1  the rest as JSON (nlohmann's parser): append_json == dump, and the text reads back equal
//   2  the rest as doubles (8 bytes each): append_json_double == dump
//   3  the rest as a request body: parse_json_body reads what nlohmann's parser reads (when both
//      accept it), and what the writer makes of it reads back equal
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "service/codec/json_reader.hpp"
#include "service/codec/json_text.hpp"
#include "service/http/problem.hpp"
#include "tests/fuzz/support/check.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;
using nlohmann::json;

namespace {

std::string reference(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

template <class Append>
std::string written(Append append) {
  fmt::memory_buffer out;
  append(out);
  return fmt::to_string(out);
}

// JSON text cannot carry NaN or infinities (written as null), so such values cannot come back.
bool finite(const json& value) {
  if (value.is_number_float()) return std::isfinite(value.get<double>());
  if (value.is_structured()) {
    return std::all_of(value.begin(), value.end(), [](const json& v) { return finite(v); });
  }
  return true;
}

void check_round_trip(const json& value) {
  const std::string text = service::to_json_text(value);
  require(text == reference(value), "to_json_text differs from dump", text);
  if (!finite(value)) return;
  const auto back = client_parse(text);
  require(back && *back == value, "written JSON reads back different", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return -1;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      const std::string mine =
          written([&](fmt::memory_buffer& out) { service::append_json_string(out, rest); });
      require(mine == reference(json(std::string(rest))), "append_json_string differs from dump",
              mine);
      require(client_parse(mine).has_value(), "a written string does not parse", mine);
      break;
    }
    case 1: {
      const auto value = client_parse(rest);
      if (!value) return 0;
      const std::string mine =
          written([&](fmt::memory_buffer& out) { service::append_json(out, *value); });
      require(mine == reference(*value), "append_json differs from dump", mine);
      check_round_trip(*value);
      break;
    }
    case 2: {
      for (std::size_t at = 0; at + sizeof(double) <= rest.size(); at += sizeof(double)) {
        double d;
        std::memcpy(&d, rest.data() + at, sizeof d);
        const std::string mine =
            written([&](fmt::memory_buffer& out) { service::append_json_double(out, d); });
        require(mine == json(d).dump(), "append_json_double differs from dump", mine);
      }
      break;
    }
    default: {
      json mine;
      try {
        mine = service::parse_json_body(rest);
      } catch (const service::request_error& e) {
        require(e.status() == 400, "a body refused with another status");
        return 0;
      }
      if (const auto theirs = client_parse(rest)) {
        require(mine == *theirs, "the request reader reads another value than nlohmann",
                std::string(rest.substr(0, 512)));
      }
      check_round_trip(mine);
    }
  }
  return 0;
}
