// Named coordination primitives over HTTP: /v1/semaphores, /v1/locks, /v1/events,
// /v1/barriers, /v1/queues. Each handler parses, calls the coordinator, encodes.
#include <boost/asio/detached.hpp>

#include "libcore/primitives/coordinator.hpp"
#include "service/http_api.hpp"
#include "service/json_reader.hpp"
#include "service/problem.hpp"
#include "service/query_reader.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

constexpr std::int64_t max_wait_ms = 60000;
constexpr std::int64_t max_ttl_ms = 86'400'000;
constexpr std::size_t max_items_per_call = 1000;

std::string name_of(const route_match& match) {
  const std::string& name = match.path_params.at(0);
  if (!core::valid_primitive_name(name)) {
    throw request_error(404, "not_found",
                        "'" + name + "' is not a primitive name ([A-Za-z0-9_.-]{1,128})");
  }
  return name;
}

// The body as an object; an absent body reads as `{}` (for calls without fields).
json body_of(const http_request& req) {
  if (req.body.empty()) return json::object();
  require_json_body(req);
  return parse_json_body(req.body);
}

std::string timestamp(core::wall_clock::time_point t) {
  fmt::memory_buffer out;
  write_timestamp(out, t);
  return fmt::to_string(out);
}

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
          {"get_waiters", q.get_waiters}};
}

http_response no_content() {
  http_response res;
  res.status = 204;
  res.content_type.clear();
  return res;
}

core::millis wait_of(object_reader& r) {
  return r.duration("wait_ms", max_wait_ms).value_or(core::millis{0});
}

}  // namespace

// ---- semaphores and locks -------------------------------------------------------------------

core::awaitable<http_response> http_api::primitive(const http_request& req,
                                                   const route_match& match, endpoint target) {
  query_reader q(match.query);
  std::string name = name_of(match);
  auto& coord = coordinator_;
  switch (target) {
    case endpoint::put_semaphore: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"permits"});
      const auto permits = r.integer("permits", 1, 1'000'000);
      if (!permits) throw invalid_request("field 'permits' (1 to 1000000) is required");
      const auto state = co_await coord.put_semaphore(name, static_cast<std::size_t>(*permits));
      co_return json_response(200, semaphore_json(state));
    }
    case endpoint::put_lock: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {});
      const auto state = co_await coord.get_semaphore(name, true);
      co_return json_response(200, semaphore_json(state));
    }
    case endpoint::get_semaphore:
    case endpoint::get_lock: {
      q.finish();
      const bool lock = target == endpoint::get_lock;
      const auto state = co_await coord.get_semaphore(name, lock);
      co_return json_response(200, semaphore_json(state));
    }
    case endpoint::delete_semaphore:
    case endpoint::delete_lock:
      q.finish();
      co_await coord.remove_semaphore(name, target == endpoint::delete_lock);
      co_return no_content();
    case endpoint::acquire_semaphore:
    case endpoint::acquire_lock: {
      q.finish();
      const bool lock = target == endpoint::acquire_lock;
      const json body = body_of(req);
      object_reader r(body, "", {"holder", "wait_ms", "ttl_ms", "reentrant"});
      core::acquire_request request;
      auto holder = r.string("holder", 256);
      if (!holder || holder->empty())
        throw invalid_request("field 'holder' (1 to 256 characters) is required");
      request.holder = std::move(*holder);
      request.ttl = r.duration("ttl_ms", max_ttl_ms).value_or(core::millis{30000});
      if (request.ttl.count() == 0) throw invalid_request("field 'ttl_ms' must be at least 1");
      if (lock) {
        request.reentrant = r.boolean("reentrant").value_or(false);
      } else if (r.has("reentrant")) {
        throw invalid_request("unknown field 'reentrant' (locks only)");
      }
      const auto wait = wait_of(r);
      const auto started = core::steady_clock::now();
      const core::permit p = co_await coord.acquire(name, lock, std::move(request), wait);
      metrics_.primitive_acquired(
          std::chrono::duration<double>(core::steady_clock::now() - started).count());
      http_response res = json_response(200, permit_json(p));
      // Not delivered (the client left): the permit goes to the next in line.
      res.undelivered = [&coord, name, lock, id = p.id] {
        net::co_spawn(coord.get_executor(), coord.release(name, lock, id), net::detached);
      };
      co_return res;
    }
    case endpoint::release_semaphore:
    case endpoint::release_lock: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"permit_id"});
      auto id = r.string("permit_id", 128);
      if (!id) throw invalid_request("field 'permit_id' is required");
      const auto left = co_await coord.release(name, target == endpoint::release_lock, *id);
      co_return json_response(200, json{{"permit_id", *id}, {"count", left}});
    }
    case endpoint::keepalive_semaphore:
    case endpoint::keepalive_lock: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"permit_id", "ttl_ms"});
      auto id = r.string("permit_id", 128);
      if (!id) throw invalid_request("field 'permit_id' is required");
      const auto ttl = r.duration("ttl_ms", max_ttl_ms).value_or(core::millis{30000});
      if (ttl.count() == 0) throw invalid_request("field 'ttl_ms' must be at least 1");
      const auto p = co_await coord.keepalive(name, target == endpoint::keepalive_lock, *id, ttl);
      co_return json_response(200, permit_json(p));
    }
    default:
      break;
  }
  co_return co_await primitive_other(req, match, target);
}

// ---- events, barriers, queues ---------------------------------------------------------------

core::awaitable<http_response> http_api::primitive_other(const http_request& req,
                                                         const route_match& match,
                                                         endpoint target) {
  query_reader q(match.query);
  std::string name = name_of(match);
  auto& coord = coordinator_;
  switch (target) {
    case endpoint::put_event:
    case endpoint::set_event:
    case endpoint::clear_event: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {});
      if (target == endpoint::clear_event) {
        const auto state = co_await coord.set_event(name, false, true);
        co_return json_response(200, event_json(state));
      }
      const auto state = co_await coord.set_event(name, target == endpoint::set_event, false);
      co_return json_response(200, event_json(state));
    }
    case endpoint::wait_event: {
      const auto wait = q.integer("wait_ms", 0, max_wait_ms).value_or(0);
      q.finish();
      const bool set = co_await coord.wait_event(name, core::millis(wait));
      co_return json_response(200, json{{"set", set}});
    }
    case endpoint::delete_event:
      q.finish();
      co_await coord.remove_event(name);
      co_return no_content();
    case endpoint::put_barrier: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"parties"});
      const auto parties = r.integer("parties", 1, 10000);
      if (!parties) throw invalid_request("field 'parties' (1 to 10000) is required");
      const auto state = co_await coord.put_barrier(name, static_cast<std::size_t>(*parties));
      co_return json_response(200, barrier_json(state));
    }
    case endpoint::get_barrier: {
      q.finish();
      const auto state = co_await coord.get_barrier(name);
      co_return json_response(200, barrier_json(state));
    }
    case endpoint::delete_barrier:
      q.finish();
      co_await coord.remove_barrier(name);
      co_return no_content();
    case endpoint::wait_barrier: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"wait_ms"});
      const auto pass = co_await coord.wait_barrier(name, wait_of(r));
      co_return json_response(200,
                              json{{"generation", pass.generation}, {"arrival", pass.arrival}});
    }
    case endpoint::put_queue: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"maxsize"});
      const auto maxsize = r.integer("maxsize", 1, 1'000'000);
      if (!maxsize) throw invalid_request("field 'maxsize' (1 to 1000000) is required");
      const auto state = co_await coord.put_queue(name, static_cast<std::size_t>(*maxsize));
      co_return json_response(200, queue_json(state));
    }
    case endpoint::get_queue: {
      q.finish();
      const auto state = co_await coord.get_queue(name);
      co_return json_response(200, queue_json(state));
    }
    case endpoint::delete_queue:
      q.finish();
      co_await coord.remove_queue(name);
      co_return no_content();
    case endpoint::queue_put: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"items", "wait_ms"});
      const json* items = r.raw("items");
      if (!items || !items->is_array() || items->empty() || items->size() > max_items_per_call) {
        throw invalid_request("field 'items' must be an array of 1 to " +
                              std::to_string(max_items_per_call) + " JSON values");
      }
      const auto wait = wait_of(r);
      std::vector<json> values(items->begin(), items->end());
      const std::size_t n = values.size();
      co_await coord.put_items(name, std::move(values), wait);
      co_return json_response(200, json{{"put", n}});
    }
    case endpoint::queue_get: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"max_items", "wait_ms", "lease_ms"});
      const auto max_items = r.integer("max_items", 1, max_items_per_call).value_or(1);
      const auto wait = wait_of(r);
      const auto lease = r.duration("lease_ms", max_ttl_ms).value_or(core::millis{30000});
      if (lease.count() == 0) throw invalid_request("field 'lease_ms' must be at least 1");
      auto got = co_await coord.get_items(name, static_cast<std::size_t>(max_items), wait, lease);
      json out = json::array();
      std::vector<std::string> receipts;
      for (auto& d : got) {
        receipts.push_back(d.receipt);
        out.push_back(json{{"receipt", d.receipt}, {"value", std::move(d.value)}});
      }
      http_response res = json_response(200, json{{"items", std::move(out)}});
      if (!receipts.empty()) {  // not delivered: the items go back at once, not at lease end
        res.undelivered = [&coord, name, receipts = std::move(receipts)] {
          net::co_spawn(coord.get_executor(), coord.return_items(name, receipts), net::detached);
        };
      }
      co_return res;
    }
    case endpoint::queue_done: {
      q.finish();
      const json body = body_of(req);
      object_reader r(body, "", {"receipts"});
      const json* receipts = r.raw("receipts");
      if (!receipts || !receipts->is_array() || receipts->empty() ||
          receipts->size() > max_items_per_call) {
        throw invalid_request("field 'receipts' must be an array of 1 to " +
                              std::to_string(max_items_per_call) + " receipts");
      }
      std::vector<std::string> ids;
      for (const auto& id : *receipts) {
        if (!id.is_string()) throw invalid_request("field 'receipts' must hold strings");
        ids.push_back(id.get<std::string>());
      }
      const std::size_t n = ids.size();
      auto unknown = co_await coord.done_items(name, std::move(ids));
      co_return json_response(200, json{{"done", n - unknown.size()}, {"unknown", unknown}});
    }
    case endpoint::queue_join: {
      const auto wait = q.integer("wait_ms", 0, max_wait_ms).value_or(0);
      q.finish();
      const auto unfinished = co_await coord.join_queue(name, core::millis(wait));
      co_return json_response(200, json{{"unfinished", unfinished}});
    }
    default:
      break;
  }
  throw std::logic_error("not a primitive endpoint");
}

}  // namespace gatherd::service
