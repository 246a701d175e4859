// The HTTP API's routes, one registration function per resource (each in its own file under
// service/api/). Adding an endpoint: a handler in its resource's file, added there, its codec
// in service/codec/, and its path in proto/openapi.yaml (the contract test compares them).
#pragma once

#include "service/http/router.hpp"

namespace gatherd::service {

void add_operation_routes(route_table& t);  // operations.cpp: health, readiness, metrics, contract
void add_probe_routes(route_table& t);      // operations.cpp: health, readiness, metrics
void add_job_routes(route_table& t);        // jobs.cpp
void add_gather_routes(route_table& t);     // gather.cpp
void add_fetch_routes(route_table& t);      // fetch.cpp
void add_websocket_routes(route_table& t);  // websocket.cpp: the upgrade to /v1/ws
void add_semaphore_routes(route_table& t);  // semaphores.cpp: semaphores and locks
void add_event_routes(route_table& t);      // events.cpp
void add_barrier_routes(route_table& t);    // barriers.cpp
void add_queue_routes(route_table& t);      // queues.cpp

// Every route of the service, in the order `--print-routes` lists them.
route_table api_routes();

// The admin listener's routes (--admin-port): the probes and the metrics, nothing a client calls.
route_table admin_routes();

}  // namespace gatherd::service
