// What every HTTP request goes through, around its handler: a request id, routing (404, 405
// with Allow), bearer-token auth on /v1/*, the race against a client that leaves during a long
// wait, errors as problem+json, the request metrics and the access log line. Never throws.
#pragma once

#include <string>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"
#include "service/http/http_message.hpp"
#include "service/http/router.hpp"

namespace gatherd::service {

class metrics;

class pipeline {
 public:
  pipeline(const route_table& routes, api_context& api, metrics& m);

  core::awaitable<http_response> handle(http_request request);

  // For errors found before a request is complete (limits, syntax): counted and logged too.
  http_response reject(const http_request& partial, unsigned status, const std::string& code,
                       const std::string& detail);

  api_context& api() { return api_; }

 private:
  core::awaitable<http_response> respond(const http_request& req, const routing& r);
  core::awaitable<http_response> respond_unless_client_gone(const http_request& req,
                                                            const routing& r);
  void finish(const http_request& req, std::string_view route, http_response& res,
              core::steady_clock::time_point started);

  const route_table& routes_;
  api_context& api_;
  metrics& metrics_;
};

// A request id as received, kept when it is 1 to 128 printable ASCII characters.
bool valid_request_id(std::string_view id);
std::string new_request_id();

}  // namespace gatherd::service
