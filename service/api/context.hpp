// What every handler of the HTTP API may use: the engine, the coordinator and the fetcher it
// calls, the limits it validates against and the meters it feeds. One per process, built by
// main.cpp; handlers are free functions over it (service/api/*.cpp), thin: parse (codec/) ->
// call libcore -> encode (codec/).
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <vector>

#include "libcore/engine.hpp"
#include "libcore/fetch/fetcher.hpp"
#include "libcore/primitives/coordinator.hpp"
#include "service/codec/job_codec.hpp"
#include "service/config.hpp"
#include "service/http/http_message.hpp"
#include "service/telemetry/fetch_metrics.hpp"
#include "service/telemetry/metrics.hpp"

namespace gatherd::service {

enum class readiness { starting, ready, draining };

struct api_context {
  // `io`: one executor per I/O thread, the engine's first. Large requests use the others: a
  // large gather's answer is written on the last while its jobs finish, and its entries are
  // read on two threads.
  api_context(const config& c, core::engine& e, core::coordinator& co, core::fetch::fetcher& f,
              metrics& m, fetch_metrics& fm, std::vector<boost::asio::any_io_executor> io);

  const config& settings;
  core::engine& engine;
  core::coordinator& coordinator;
  core::fetch::fetcher& fetcher;
  metrics& meter;
  fetch_metrics& fetch_meter;
  const std::vector<boost::asio::any_io_executor> io;
  const spec_limits limits;  // what request bodies are validated against
  std::atomic<readiness> ready{readiness::starting};
  std::atomic<std::size_t> websockets{0};  // open WebSocket sessions (their 101 reserves one)

  // Runs work(begin, end) over [0, n): for large n, half of it on another I/O thread at the
  // same time. An exception from the first half is rethrown before one from the second.
  core::awaitable<void> in_two_halves(
      std::size_t n, const std::function<void(std::size_t, std::size_t)>& work) const;
};

// Helpers shared by the handlers.
http_response json_response(unsigned status, const nlohmann::json& body);
http_response text_response(unsigned status, std::string body);  // a JSON text already written
http_response no_content();
// Accept asks for application/x-ndjson (as_completed streaming).
bool wants_ndjson(const http_request& req);

}  // namespace gatherd::service
