// The route table: every (method, path pattern) the service answers, and matching of a
// request target against it. The table is also what `--print-routes` prints and what the
// contract test compares with proto/openapi.yaml.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "service/http_message.hpp"

namespace gatherd::service {

enum class endpoint {
  healthz,
  readyz,
  metrics,
  openapi,
  submit_job,
  submit_batch,
  list_jobs,
  get_job,
  cancel_job,
  delete_job,
  gather,
  fetch,
  websocket,
  // named primitives (handlers/primitives.cpp)
  put_semaphore,
  get_semaphore,
  delete_semaphore,
  acquire_semaphore,
  release_semaphore,
  keepalive_semaphore,
  put_lock,
  get_lock,
  delete_lock,
  acquire_lock,
  release_lock,
  keepalive_lock,
  put_event,
  wait_event,
  delete_event,
  set_event,
  clear_event,
  put_barrier,
  get_barrier,
  delete_barrier,
  wait_barrier,
  put_queue,
  get_queue,
  delete_queue,
  queue_put,
  queue_get,
  queue_done,
  queue_join,
};

struct route {
  std::string method;
  std::string pattern;  // segments in braces match any one non-empty segment
  endpoint target;
  // The handler may wait long (long-polls, gathers): the request is abandoned (its handler
  // cancelled) if the client disconnects meanwhile.
  bool waits = false;
};

const std::vector<route>& route_table();

struct routing {
  const route* matched = nullptr;  // null: no route (see allow)
  std::string allow;               // when the path exists under other methods: 405 with Allow
  route_match match;
  bool bad_target = false;  // the target is not a valid origin-form URI
};

routing find_route(std::string_view method, std::string_view target);

}  // namespace gatherd::service
