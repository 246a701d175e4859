// The named primitives' JSON: their state out (semaphores and locks, events, barriers,
// queues), and the fields their calls share in.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "libcore/primitives/coordinator.hpp"
#include "service/http/http_message.hpp"

namespace gatherd::service {

class object_reader;

// {"permit_id","fencing_token","count","expires_at"}
nlohmann::json permit_json(const core::permit& p);
// {"name","permits","available","holders": [permit + "holder"],"waiters"}
nlohmann::json semaphore_json(const core::semaphore_info& s);
nlohmann::json event_json(const core::event_info& e);  // {"name","set","waiters"}
nlohmann::json barrier_json(
    const core::barrier_info& b);  // {"name","parties","waiting","generation"}
// {"name","maxsize","size","leased","unfinished","put_waiters","get_waiters","max_bytes","bytes"}
nlohmann::json queue_json(const core::queue_info& q);

// The name in a primitive's path; an invalid one names nothing: 404.
std::string primitive_name(const route_match& match);

// A body that may be absent: an absent body reads as `{}` (calls without fields).
nlohmann::json optional_body(const http_request& req);

inline constexpr std::int64_t max_primitive_wait_ms = 60000;
inline constexpr std::int64_t max_lease_ms = 86'400'000;
inline constexpr core::millis default_lease{30000};

// "wait_ms" (0 to 60000, default 0).
core::millis read_wait(object_reader& r);
// A lease length field ("ttl_ms", "lease_ms"): 1 ms to a day, 30 s by default.
core::millis read_lease(object_reader& r, std::string_view field);

}  // namespace gatherd::service
