// Writing JSON text directly into a buffer, for the hot paths (job objects, log lines) where
// building an nlohmann::json tree first would cost an allocation per field.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace gatherd::service {

// Appends `s` as a JSON string literal (quoted, escaped).
inline void append_json_string(fmt::memory_buffer& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out.append(std::string_view("\\\""));
        break;
      case '\\':
        out.append(std::string_view("\\\\"));
        break;
      case '\n':
        out.append(std::string_view("\\n"));
        break;
      case '\r':
        out.append(std::string_view("\\r"));
        break;
      case '\t':
        out.append(std::string_view("\\t"));
        break;
      default:
        if (c < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

}  // namespace gatherd::service
