// gatherd in-process, without sockets: the engine, the coordinator, the fetcher (behind a canned
// outbound client: no DNS, no network), the API context, the route table and the pipeline, wired
// as service/main.cpp wires them, on one io_context that the fuzzer's own thread runs.
//
// Each fuzz input gets a fresh one, so a crash reproduces from its input alone. Requests are
// bounded the way a real client bounds them: the client "leaves" after a few turns of the event
// loop, which ends every wait (long-polls, gathers, acquires) with 499, as a disconnect does.
#pragma once

#include <boost/asio/io_context.hpp>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libcore/asio.hpp"
#include "service/config.hpp"
#include "service/http/http_message.hpp"

namespace gatherd::service {
struct api_context;
struct ws_services;
class pipeline;
}  // namespace gatherd::service

namespace gatherd::fuzz {

class service_harness {
 public:
  service_harness();
  ~service_harness();  // shuts down as main.cpp does, then runs until nothing is left
  service_harness(const service_harness&) = delete;
  service_harness& operator=(const service_harness&) = delete;

  // The defaults of `gatherd` with no flags, on one I/O thread and one compute thread.
  static service::config settings();

  // Runs `work` on this thread until it completes and returns its result.
  template <class T>
  T run(core::awaitable<T> work);
  void run(core::awaitable<void> work);

  // One request through the pipeline, as the server hands it over (client_gone included).
  service::http_response handle(service::http_request req);
  core::awaitable<service::http_response> request(service::http_request req);
  // The pieces of a streamed body (NDJSON), produced until done or until the client leaves.
  std::vector<std::string> drain(const service::http_response& res);

  // Completes after `turns` turns of the event loop: how long the fuzzed client stays.
  core::awaitable<void> patience(int turns = 64);

  core::executor executor();
  service::api_context& api();
  service::ws_services& websockets();
  service::pipeline& requests();

 private:
  void drive(const bool& done);

  struct parts;
  boost::asio::io_context io_{1};  // first: destroyed last, after every frame it holds
  std::unique_ptr<parts> parts_;
};

template <class T>
T service_harness::run(core::awaitable<T> work) {
  std::optional<T> result;
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(io_, std::move(work), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) result.emplace(std::move(value));
    done = true;
  });
  drive(done);
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

// True when a JSON request body (or WebSocket message) asks a sleep job for a cleanup longer
// than the harness can wait for: shutdown awaits cleanups, and `cleanup_ms` may be a day. Such
// inputs are skipped (see docs/fuzzing.md); the check reads the body with the service's own
// reader, so escapes such as "cleanup\u005fms" are seen too.
bool asks_long_cleanup(std::string_view body);

}  // namespace gatherd::fuzz
