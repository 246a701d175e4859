#include "service/api/routes.hpp"

namespace gatherd::service {

route_table api_routes() {
  route_table t;
  add_operation_routes(t);
  add_job_routes(t);
  add_gather_routes(t);
  add_fetch_routes(t);
  add_websocket_routes(t);
  add_semaphore_routes(t);
  add_event_routes(t);
  add_barrier_routes(t);
  add_queue_routes(t);
  return t;
}

route_table admin_routes() {
  route_table t;
  add_probe_routes(t);
  return t;
}

}  // namespace gatherd::service
