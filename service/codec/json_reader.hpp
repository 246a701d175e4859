// Strict reading of JSON request bodies: every field is typed and range-checked, and a field
// outside the object's schema is an error naming it, reported before anything else (a typo
// such as `timeout` must never pass silently). `null` is a value of the wrong type, not absence.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libcore/clock.hpp"
#include "service/http/http_message.hpp"

namespace gatherd::service {

using json = nlohmann::json;

// Parses a request body; a syntax error is a 400 invalid_request.
json parse_json_body(std::string_view body);
// A request's Content-Type must be application/json (parameters allowed): else 415.
void require_json_body(const http_request& req);

class object_reader {
 public:
  // `path` names the object in messages ("", "params", "jobs[3].retry"); `allowed` lists
  // every field the object may have.
  object_reader(const json& value, std::string path,
                std::initializer_list<std::string_view> allowed);

  bool has(std::string_view key) const { return object_.contains(key); }
  const json* raw(std::string_view key);  // any JSON value
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  std::optional<double> number(std::string_view key, double min, double max);
  std::optional<bool> boolean(std::string_view key);
  std::optional<std::string> string(std::string_view key, std::size_t max_length);
  std::optional<core::millis> duration(std::string_view key, std::int64_t max_ms);
  std::optional<object_reader> object(std::string_view key,
                                      std::initializer_list<std::string_view> allowed);
  std::string field(std::string_view key) const;  // full name, for messages

 private:
  const json* take(std::string_view key) const;
  const json& object_;
  std::string path_;
};

}  // namespace gatherd::service
