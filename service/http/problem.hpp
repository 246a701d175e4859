// RFC 9457 problem documents: the one way any error leaves the service.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

#include "service/http/http_message.hpp"

namespace gatherd::service {

// A request the service refuses; carries its status and problem code.
class request_error : public std::runtime_error {
 public:
  request_error(unsigned status, std::string code, const std::string& detail)
      : std::runtime_error(detail), status_(status), code_(std::move(code)) {}
  unsigned status() const { return status_; }
  const std::string& code() const { return code_; }

 private:
  unsigned status_;
  std::string code_;
};

inline request_error invalid_request(const std::string& detail) {
  return request_error(400, "invalid_request", detail);
}

http_response problem_response(unsigned status, const std::string& code, const std::string& detail);

// Maps whatever a handler threw (request_error, core::engine_error, anything else) to a
// problem response. The single place where libcore errors become HTTP statuses.
http_response problem_from(std::exception_ptr error);

}  // namespace gatherd::service
