#include "service/codec/primitive_codec.hpp"

#include "service/codec/job_codec.hpp"
#include "service/codec/json_reader.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

std::string timestamp(core::wall_clock::time_point t) {
  fmt::memory_buffer out;
  write_timestamp(out, t);
  return fmt::to_string(out);
}

}  // namespace

json permit_json(const core::permit& p) {
  return {{"permit_id", p.id},
          {"fencing_token", p.fencing_token},
          {"count", p.count},
          {"expires_at", timestamp(p.expires_at)}};
}

json semaphore_json(const core::semaphore_info& s) {
  json holders = json::array();
  for (const auto& p : s.holders) {
    json h = permit_json(p);
    h["holder"] = p.holder;
    holders.push_back(std::move(h));
  }
  return {{"name", s.name},
          {"permits", s.permits},
          {"available", s.available},
          {"holders", std::move(holders)},
          {"waiters", s.waiters}};
}

json event_json(const core::event_info& e) {
  return {{"name", e.name}, {"set", e.set}, {"waiters", e.waiters}};
}

json barrier_json(const core::barrier_info& b) {
  return {{"name", b.name},
          {"parties", b.parties},
          {"waiting", b.waiting},
          {"generation", b.generation}};
}

json queue_json(const core::queue_info& q) {
  return {{"name", q.name},
          {"maxsize", q.maxsize},
          {"size", q.size},
          {"leased", q.leased},
          {"unfinished", q.unfinished},
          {"put_waiters", q.put_waiters},
          {"get_waiters", q.get_waiters},
          {"max_bytes", q.max_bytes},
          {"bytes", q.bytes}};
}

std::string primitive_name(const route_match& match) {
  const std::string& name = match.path_params.at(0);
  if (!core::valid_primitive_name(name)) {
    throw request_error(404, "not_found",
                        "'" + name + "' is not a primitive name ([A-Za-z0-9_.-]{1,128})");
  }
  return name;
}

json optional_body(const http_request& req) {
  if (req.body.empty()) return json::object();
  require_json_body(req);
  return parse_json_body(req.body);
}

core::millis read_wait(object_reader& r) {
  return r.duration("wait_ms", max_primitive_wait_ms).value_or(core::millis{0});
}

core::millis read_lease(object_reader& r, std::string_view field) {
  const auto lease = r.duration(field, max_lease_ms).value_or(default_lease);
  if (lease.count() == 0)
    throw invalid_request("field '" + r.field(field) + "' must be at least 1");
  return lease;
}

}  // namespace gatherd::service
