// The named primitives' request bodies, read by their handlers (service/api/semaphores, events,
// barriers, queues) with the JSON reader and primitive_codec, against a real coordinator.
// Bodies reach them without HTTP framing, so the fuzzer spends its time on the JSON.
//
// Each input line is one call on the primitives named "p": `[&][op letter][body]`.
//   op letters  a-f semaphore put/get/delete/acquire/release/keepalive, g-l the same for the
//               lock, m-q event put/get(wait)/delete/set/clear, r-u barrier put/get/delete/wait,
//               v-B queue put/get/delete/put items/get items/done/join
//   &           start the call and go on without waiting for it (concurrent clients)
//   ! (after the letter)  the answer is not delivered: the handler's give-back runs
// In a body, $permit and $receipt stand for the last permit id and receipt answered, so
// release, keepalive and done can name real ones.
//
// Asserted as for any request: never 5xx, problems that parse and match their status.
#include <cstddef>
#include <cstdint>
#include <string>

#include "service/http/pipeline.hpp"
#include "tests/fuzz/support/check.hpp"
#include "tests/fuzz/support/service_harness.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;

namespace {

namespace net = boost::asio;

constexpr std::size_t max_calls = 16;
constexpr std::string_view letters = "abcdefghijklmnopqrstuvwxyzAB";
constexpr std::pair<const char*, const char*> calls[] = {
    {"PUT", "/v1/semaphores/p"},
    {"GET", "/v1/semaphores/p"},
    {"DELETE", "/v1/semaphores/p"},
    {"POST", "/v1/semaphores/p/acquire"},
    {"POST", "/v1/semaphores/p/release"},
    {"POST", "/v1/semaphores/p/keepalive"},
    {"PUT", "/v1/locks/p"},
    {"GET", "/v1/locks/p"},
    {"DELETE", "/v1/locks/p"},
    {"POST", "/v1/locks/p/acquire"},
    {"POST", "/v1/locks/p/release"},
    {"POST", "/v1/locks/p/keepalive"},
    {"PUT", "/v1/events/p"},
    {"GET", "/v1/events/p?wait_ms=50"},
    {"DELETE", "/v1/events/p"},
    {"POST", "/v1/events/p/set"},
    {"POST", "/v1/events/p/clear"},
    {"PUT", "/v1/barriers/p"},
    {"GET", "/v1/barriers/p"},
    {"DELETE", "/v1/barriers/p"},
    {"POST", "/v1/barriers/p/wait"},
    {"PUT", "/v1/queues/p"},
    {"GET", "/v1/queues/p"},
    {"DELETE", "/v1/queues/p"},
    {"POST", "/v1/queues/p/put"},
    {"POST", "/v1/queues/p/get"},
    {"POST", "/v1/queues/p/done"},
    {"GET", "/v1/queues/p/join?wait_ms=50"},
};
static_assert(std::size(calls) == letters.size());

struct call {
  service::http_request request;
  bool concurrent = false;
  bool undelivered = false;
};

// What later bodies may name: the ids the service handed out.
struct handed_out {
  std::string permit = "none", receipt = "none";

  void learn(const service::http_response& res) {
    const auto body = client_parse(res.body);
    if (!body || !body->is_object()) return;
    if (auto it = body->find("permit_id"); it != body->end() && it->is_string()) permit = *it;
    if (auto it = body->find("items"); it != body->end() && it->is_array() && !it->empty()) {
      const auto& first = it->front();
      if (first.is_object() && first.contains("receipt")) receipt = first["receipt"];
    }
  }

  std::string fill(std::string body) const {
    for (const auto& [name, value] : {std::pair{"$permit", &permit}, {"$receipt", &receipt}}) {
      for (auto at = body.find(name); at != std::string::npos; at = body.find(name, at)) {
        body.replace(at, std::string_view(name).size(), *value);
        at += value->size();
      }
    }
    return body;
  }
};

core::awaitable<void> answer(service_harness& h, call c, handed_out& ids) {
  const std::string what = c.request.method + " " + c.request.target + " " + c.request.body;
  const auto res = co_await h.request(std::move(c.request));
  check_response(res, what);
  ids.learn(res);
  if (c.undelivered && res.undelivered) res.undelivered();
}

core::awaitable<void> play(service_harness& h, std::vector<call> script) {
  handed_out ids;
  std::size_t running = 0;
  for (auto& c : script) {
    c.request.body = ids.fill(std::move(c.request.body));
    if (!c.concurrent) {
      co_await answer(h, std::move(c), ids);
      continue;
    }
    ++running;
    net::co_spawn(h.executor(), answer(h, std::move(c), ids), [&running](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
      --running;
    });
  }
  while (running > 0) co_await h.patience(1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<call> script;
  while (!input.empty() && script.size() < max_calls) {
    std::string_view line = input.substr(0, input.find('\n'));
    input.remove_prefix(std::min(input.size(), line.size() + 1));
    call c;
    c.concurrent = line.starts_with('&');
    if (c.concurrent) line.remove_prefix(1);
    if (line.empty() || letters.find(line.front()) == std::string_view::npos) continue;
    const auto& [method, target] = calls[letters.find(line.front())];
    line.remove_prefix(1);
    c.undelivered = line.starts_with('!');
    if (c.undelivered) line.remove_prefix(1);
    c.request.method = method;
    c.request.target = target;
    c.request.body = std::string(line);
    if (!line.empty()) c.request.content_type = "application/json";
    script.push_back(std::move(c));
  }
  if (script.empty()) return -1;
  service_harness h;
  h.run(play(h, std::move(script)));
  return 0;
}
