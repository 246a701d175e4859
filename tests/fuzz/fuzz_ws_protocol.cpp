// The WebSocket message protocol (service/websocket/protocol) without frames: each line of the
// input is one client message (a line starting with 0x01 is sent as a binary frame), given to
// ws_protocol::receive as the session does; then the connection closes (ws_protocol::close).
//
// Asserted for every message the client gets: JSON text that parses, a known type, a `reply`
// whose status is in 100..599 and never 5xx with a problem body for errors, an `error` whose
// problem says 400.
#include <cstddef>
#include <cstdint>
#include <set>

#include "service/api/context.hpp"
#include "service/websocket/protocol.hpp"
#include "tests/fuzz/support/check.hpp"
#include "tests/fuzz/support/service_harness.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;

namespace {

namespace net = boost::asio;

constexpr std::size_t max_messages = 16;

// The session's outbound queue, unbounded here: every message is kept to be checked.
class collecting_outbox : public service::ws_outbox {
 public:
  bool offer(service::message_ptr message, std::string_view) override {
    sent.push_back(std::move(message));
    return true;
  }
  core::awaitable<bool> send(service::message_ptr message, std::string_view type) override {
    co_return offer(std::move(message), type);
  }
  std::vector<service::message_ptr> sent;
};

void check_message(const std::string& text) {
  static const std::set<std::string> types{"reply", "error", "job", "gather", "gather_done"};
  if (tracing()) std::fprintf(stderr, "%.300s\n", text.c_str());
  const auto message = client_parse(text);
  require(message && message->is_object(), "a message to the client is not a JSON object", text);
  require(message->contains("type") && (*message)["type"].is_string() &&
              types.contains((*message)["type"].get<std::string>()),
          "a message of no known type", text);
  const std::string type = (*message)["type"];
  if (type == "reply") {
    const auto status = message->value("status", 0u);
    require(status >= 100 && status <= 599, "a reply status out of 100..599", text);
    require(status < 500, "a 5xx reply to a client's message", text);
    const auto& body = (*message)["body"];
    if (status >= 400) {
      require(body.is_object() && body.value("status", 0u) == status,
              "an error reply without its problem", text);
    }
  } else if (type == "error") {
    const auto& problem = (*message)["problem"];
    require(problem.is_object() && problem.value("status", 0u) == 400u,
            "an error message without a 400 problem", text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::pair<std::string, bool>> messages;
  while (!input.empty() && messages.size() < max_messages) {
    std::string_view line = input.substr(0, input.find('\n'));
    input.remove_prefix(std::min(input.size(), line.size() + 1));
    const bool binary = line.starts_with('\x01');
    if (binary) line.remove_prefix(1);
    if (asks_long_cleanup(line)) return -1;  // see asks_long_cleanup
    messages.emplace_back(std::string(line), binary);
  }

  service_harness h;
  collecting_outbox out;
  service::http_request upgrade;
  upgrade.request_id = "fuzz";
  auto protocol =
      std::make_shared<service::ws_protocol>(h.websockets(), out, h.executor(), upgrade);
  // As the session: messages are received in order while earlier operations run; the
  // connection closes after a while, which cancels whatever is still running.
  h.run([](std::shared_ptr<service::ws_protocol> protocol, service_harness& h,
           std::vector<std::pair<std::string, bool>> messages) -> core::awaitable<void> {
    bool received = false;
    net::co_spawn(
        h.executor(),
        [](std::shared_ptr<service::ws_protocol> protocol,
           std::vector<std::pair<std::string, bool>> messages) -> core::awaitable<void> {
          for (auto& [text, binary] : messages) co_await protocol->receive(std::move(text), binary);
        }(protocol, std::move(messages)),
        [&received](std::exception_ptr) { received = true; });
    co_await h.patience(256);
    co_await protocol->close();
    while (!received) co_await h.patience(1);
  }(protocol, h, std::move(messages)));
  for (const auto& message : out.sent) check_message(*message);
  return 0;
}
