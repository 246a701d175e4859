// The gatherd WebSocket protocol (GET /v1/ws), without the frames: client messages `submit`,
// `cancel` and `gather` call the same typed handlers as their REST routes (api/jobs.hpp,
// api/gather.hpp), so a reply's status and body are exactly what the REST call returns;
// `watch`/`unwatch` subscribe to the job feed. Operations of one connection run concurrently, each
// cancelled when the connection closes. Everything here runs on the connection's executor (one
// thread).
#pragma once

#include <boost/asio/cancellation_signal.hpp>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_set>

#include "libcore/notifier.hpp"
#include "service/api/context.hpp"
#include "service/config.hpp"
#include "service/telemetry/metrics.hpp"
#include "service/websocket/job_feed.hpp"

namespace gatherd::service {

using message_ptr = std::shared_ptr<const std::string>;

// Where the protocol's messages go: the connection's bounded outbound queue.
class ws_outbox {
 public:
  virtual ~ws_outbox() = default;
  // Queues at once. An overflowing queue closes the connection (1008). False once closing.
  virtual bool offer(message_ptr message, std::string_view type) = 0;
  // Queues once there is room (streams that can wait). False once closing.
  virtual core::awaitable<bool> send(message_ptr message, std::string_view type) = 0;
};

// What every session shares.
struct ws_services {
  const config& settings;
  api_context& api;
  job_feed& feed;
  metrics& meter;
};

class ws_protocol : public job_feed::watcher, public std::enable_shared_from_this<ws_protocol> {
 public:
  // `upgrade` carries the credentials, remote address and request id of the upgrade request.
  ws_protocol(ws_services& services, ws_outbox& out, core::executor ex,
              const http_request& upgrade);

  // One message from the client. Starts its operation (waiting first while the connection
  // already runs --ws-max-inflight of them) and returns; replies go to the outbox.
  core::awaitable<void> receive(std::string text, bool binary);

  // Ends every watch, cancels every operation and waits until they are over.
  core::awaitable<void> close();

  void deliver(message_ptr message) override;  // from the job feed, on the engine strand

  std::size_t messages_in() const { return messages_in_; }

 private:
  using json = nlohmann::json;

  void start(core::awaitable<void> operation);
  core::awaitable<void> submit(json ref, json message);
  core::awaitable<void> cancel(json ref, json message);
  core::awaitable<void> watch(json ref, json message);
  core::awaitable<void> unwatch(json ref, json message);
  core::awaitable<void> gather(json ref, json message);

  void reply(const json& ref, const http_response& res);
  void reply_problem(const json& ref);  // for the exception being handled
  void reply_watching(const json& ref);
  void error(const json& ref, const std::string& code, const std::string& detail);

  ws_services& services_;
  ws_outbox& out_;
  core::executor ex_;
  std::string session_id_;
  std::uint64_t next_request_ = 0;
  std::size_t messages_in_ = 0;
  bool closed_ = false;
  std::unordered_set<core::job_id, core::job_id_hash> watched_;
  bool watching_all_ = false;
  std::list<boost::asio::cancellation_signal> running_;  // one per operation in flight
  core::notifier operation_ended_;
};

}  // namespace gatherd::service
