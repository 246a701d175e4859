// RFC 9457 problem documents: the one way any error leaves the service.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

#include "service/http/http_message.hpp"

namespace gatherd::service {

// A request the service refuses; carries its status and problem code.
class request_error : public std::runtime_error {
 public:
  request_error(unsigned status, std::string code, const std::string& detail,
                std::optional<std::chrono::milliseconds> retry_after = std::nullopt)
      : std::runtime_error(detail),
        status_(status),
        code_(std::move(code)),
        retry_after_(retry_after) {}
  unsigned status() const { return status_; }
  const std::string& code() const { return code_; }
  std::optional<std::chrono::milliseconds> retry_after() const { return retry_after_; }

 private:
  unsigned status_;
  std::string code_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

inline request_error invalid_request(const std::string& detail) {
  return request_error(400, "invalid_request", detail);
}

// retry_after: for 429 and 503, when trying again is likely to succeed (1 s when unknown).
http_response problem_response(unsigned status, const std::string& code, const std::string& detail,
                               std::optional<std::chrono::milliseconds> retry_after = std::nullopt);

// A Retry-After value: delta-seconds rounded up, at least 1, at most `max` (rounded up too).
std::string retry_after_seconds(std::chrono::milliseconds after, std::chrono::milliseconds max);

// Maps whatever a handler threw (request_error, core::engine_error, anything else) to a
// problem response. The single place where libcore errors become HTTP statuses.
http_response problem_from(std::exception_ptr error);

}  // namespace gatherd::service
