// Strict reading of query parameters: typed, range-checked, unknown names refused (400).
#pragma once

#include <algorithm>
#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include "service/http/problem.hpp"

namespace gatherd::service {

class query_reader {
 public:
  explicit query_reader(const std::vector<std::pair<std::string, std::string>>& params)
      : params_(params) {}

  std::vector<std::string> all(const std::string& name) {
    known_.push_back(name);
    std::vector<std::string> values;
    for (const auto& [k, v] : params_) {
      if (k == name) values.push_back(v);
    }
    return values;
  }

  std::optional<std::string> single(const std::string& name) {
    auto values = all(name);
    if (values.empty()) return std::nullopt;
    if (values.size() > 1) throw invalid_request("query parameter '" + name + "' is repeated");
    return values.front();
  }

  std::optional<long long> integer(const std::string& name, long long min, long long max) {
    auto text = single(name);
    if (!text) return std::nullopt;
    long long value = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < min || value > max) {
      throw invalid_request("query parameter '" + name + "' must be an integer from " +
                            std::to_string(min) + " to " + std::to_string(max));
    }
    return value;
  }

  void finish() const {
    for (const auto& [k, v] : params_) {
      if (std::find(known_.begin(), known_.end(), k) == known_.end()) {
        throw invalid_request("unknown query parameter '" + k + "'");
      }
    }
  }

 private:
  const std::vector<std::pair<std::string, std::string>>& params_;
  std::vector<std::string> known_;
};

}  // namespace gatherd::service
