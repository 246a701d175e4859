// The route table: every (method, path pattern) the service answers, each with its handler, and
// matching of a request target against it. Resources add their own routes (service/api/); the
// table is also what `--print-routes` prints and what the contract test compares with
// proto/openapi.yaml.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "libcore/asio.hpp"
#include "service/http/http_message.hpp"

namespace gatherd::service {

struct api_context;  // service/api/context.hpp: what every handler may use

using handler = core::awaitable<http_response> (*)(api_context& api, const http_request& req,
                                                   const route_match& match);

// The handler may wait long (long-polls, gathers): the request is abandoned (its handler
// cancelled) if the client disconnects meanwhile.
enum class waits : bool { no, yes };

struct route {
  std::string method;
  std::string pattern;  // segments in braces match any one non-empty segment
  handler handle = nullptr;
  waits may_wait = waits::no;
};

struct routing {
  const route* matched = nullptr;  // null: no route (see allow)
  std::string allow;               // when the path exists under other methods: 405 with Allow
  route_match match;
  bool bad_target = false;  // the target is not a valid origin-form URI
};

class route_table {
 public:
  // Throws std::logic_error on a (method, pattern) added twice.
  void add(std::string method, std::string pattern, handler h, waits may_wait = waits::no);

  // A literal path ("/v1/jobs/batch") shadows a pattern that would also match ("/v1/jobs/{id}").
  routing find(std::string_view method, std::string_view target) const;

  const std::vector<route>& routes() const { return routes_; }

 private:
  std::vector<route> routes_;
};

}  // namespace gatherd::service
