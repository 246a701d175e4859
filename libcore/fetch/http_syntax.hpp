// What may go into an outbound request's method, header names and header values (RFC 9110):
// checked when a request is validated (400) and again by the client before anything is sent.
#pragma once

#include <algorithm>
#include <cctype>
#include <string_view>

namespace gatherd::core::fetch {

// A token: methods and header names.
inline bool is_token(std::string_view s) {
  static constexpr std::string_view specials = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || specials.find(c) != specials.npos;
  });
}

// A header value: no CR, LF, NUL or other control character but tab (nothing that could end a
// header line or split the request).
inline bool is_field_value(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

// An origin-form request target: printable ASCII without spaces (anything else is
// percent-encoded by then), starting with '/'.
inline bool is_origin_form(std::string_view s) {
  return s.starts_with('/') && std::all_of(s.begin(), s.end(), [](char ch) {
           const auto c = static_cast<unsigned char>(ch);
           return c > 0x20 && c < 0x7f;
         });
}

}  // namespace gatherd::core::fetch
