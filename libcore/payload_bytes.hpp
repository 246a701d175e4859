// What a client's data weighs, for the byte budgets (queue items, retained jobs): the length of
// a value's compact JSON text, strings counted at their raw length (escapes are a matter of the
// wire, not of memory). Honest about payload, blind to allocator overhead: the budgets bound what
// clients can make the server hold, and a count cap bounds the rest. Computed once per value
// when it comes in; the budgets keep running totals, never recount.
#pragma once

#include <charconv>
#include <cstddef>
#include <nlohmann/json.hpp>

namespace gatherd::core {

inline std::size_t payload_bytes(const nlohmann::json& v) {
  using t = nlohmann::json::value_t;
  char digits[32];
  auto printed = [&](auto number) {
    return static_cast<std::size_t>(std::to_chars(digits, digits + sizeof digits, number).ptr -
                                    digits);
  };
  switch (v.type()) {
    case t::null:
      return 4;
    case t::boolean:
      return v.get<bool>() ? 4 : 5;
    case t::number_integer:
      return printed(v.get<std::int64_t>());
    case t::number_unsigned:
      return printed(v.get<std::uint64_t>());
    case t::number_float:
      return printed(v.get<double>());
    case t::string:
      return v.get_ref<const std::string&>().size() + 2;
    case t::binary:
      return v.get_binary().size();
    case t::array: {
      std::size_t n = 2 + (v.empty() ? 0 : v.size() - 1);  // brackets and commas
      for (const auto& e : v) n += payload_bytes(e);
      return n;
    }
    case t::object: {
      std::size_t n = 2 + (v.empty() ? 0 : v.size() - 1);
      for (const auto& [key, value] : v.items()) n += key.size() + 3 + payload_bytes(value);
      return n;
    }
    case t::discarded:
      return 0;
  }
  return 0;
}

}  // namespace gatherd::core
