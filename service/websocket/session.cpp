#include "service/websocket/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <optional>

#include "libcore/notifier.hpp"
#include "service/telemetry/log.hpp"
#include "service/websocket/protocol.hpp"

namespace gatherd::service {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
constexpr auto tuple_awaitable = net::as_tuple(net::use_awaitable);
constexpr auto forever = core::steady_clock::time_point::max();

struct websocket_session::impl : ws_outbox {
  impl(tcp::socket& socket, ws_services& s, http_request upgrade)
      : ws(socket), services(s), info(std::move(upgrade)) {}

  // ---- the outbound queue: bounded in bytes ---------------------------------------------------

  bool offer(message_ptr message, std::string_view type) override {
    if (closing) return false;
    if (!outbox.empty() && outbox_bytes + message->size() > services.settings.ws_outbox_bytes) {
      // The client does not read fast enough: drop what is queued rather than grow.
      begin_close(websocket::close_code::policy_error, "slow_consumer");
      return false;
    }
    push(std::move(message), type);
    return true;
  }

  core::awaitable<bool> send(message_ptr message, std::string_view type) override {
    // Streams wait while the queue is half full, which leaves room for replies and watches.
    const std::size_t room_left = services.settings.ws_outbox_bytes / 2;
    while (!closing && !outbox.empty() && outbox_bytes + message->size() > room_left) {
      co_await room.wait_until(forever);
    }
    if (closing) co_return false;
    push(std::move(message), type);
    co_return true;
  }

  void push(message_ptr message, std::string_view type) {
    outbox_bytes += message->size();
    outbox.emplace_back(std::move(message), type);
    writer_wake.notify_all();
  }

  // Stops queueing; the writer sends `code` (if any) once its current write is done.
  void begin_close(std::optional<websocket::close_code> code, std::string_view why) {
    if (closing) return;
    closing = true;
    close_with = code;
    if (reason.empty()) reason = why;
    outbox.clear();
    outbox_bytes = 0;
    writer_wake.notify_all();
    room.notify_all();
  }

  // ---- the loops ------------------------------------------------------------------------------

  net::awaitable<void> write_loop() {
    for (;;) {
      while (outbox.empty() && !closing) co_await writer_wake.wait_until(forever);
      if (closing) break;
      auto [message, type] = std::move(outbox.front());
      outbox.pop_front();
      outbox_bytes -= message->size();
      room.notify_all();
      auto [ec, n] = co_await ws.async_write(net::buffer(*message), tuple_awaitable);
      if (ec) {
        begin_close(std::nullopt, "error");
        break;
      }
      services.meter.ws_sent(type);
      ++messages_out;
    }
    if (close_with && ws.is_open()) {
      co_await ws.async_close(*close_with, tuple_awaitable);  // best effort: the peer may be gone
    }
    writer_done = true;
    writer_ended.notify_all();
  }

  net::awaitable<void> read_loop() {
    beast::flat_buffer buffer;
    for (;;) {
      auto [ec, n] = co_await ws.async_read(buffer, tuple_awaitable);
      if (ec) {
        if (reason.empty()) reason = reason_of(ec);
        co_return;
      }
      std::string text = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      if (buffer.capacity() > 64 * 1024) buffer.shrink_to_fit();  // idle sessions stay small
      co_await protocol->receive(std::move(text), !ws.got_text());
    }
  }

  static std::string_view reason_of(const beast::error_code& ec) {
    if (ec == websocket::error::closed) return "client";
    if (ec == websocket::error::message_too_big) return "too_big";
    if (ec == beast::error::timeout) return "idle";
    if (ec == net::error::operation_aborted) return "shutdown";
    return "error";
  }

  net::awaitable<void> run(beast::http::request<beast::http::string_body> upgrade) {
    const auto& settings = services.settings;
    websocket::stream_base::timeout timeouts;
    timeouts.handshake_timeout = settings.header_timeout;
    timeouts.idle_timeout = settings.ws_idle_timeout;      // a ping goes out at half of it
    timeouts.keep_alive_pings = true;
    ws.set_option(timeouts);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(beast::http::field::server, "gatherd"); }));
    ws.read_message_max(settings.ws_max_message_bytes);
    ws.auto_fragment(false);

    auto [ec] = co_await ws.async_accept(upgrade, tuple_awaitable);
    upgrade = {};
    if (ec) {
      log::info("ws.handshake_failed")
          .add("request_id", info.request_id)
          .add("remote", info.remote)
          .add("error", ec.message());
      co_return;
    }
    // From now on the "handshake" timeout bounds only the closing handshake: a peer that never
    // answers our close frame must not hold a shutdown beyond its grace.
    timeouts.handshake_timeout = settings.ws_close_timeout;
    ws.set_option(timeouts);
    const auto opened = core::steady_clock::now();
    services.meter.ws_opened();
    log::info("ws.open").add("request_id", info.request_id).add("remote", info.remote);

    const auto ex = co_await net::this_coro::executor;
    protocol = std::make_shared<ws_protocol>(services, *this, ex, info);
    net::co_spawn(ex, write_loop(), net::detached);
    co_await read_loop();

    // Closed by either side: stop queueing, end the operations and watches, let the writer end.
    begin_close(std::nullopt, "error");
    co_await protocol->close();
    while (!writer_done) co_await writer_ended.wait_until(forever);
    services.meter.ws_closed(reason);
    const auto code = ws.reason().code;
    log::info("ws.close")
        .add("request_id", info.request_id)
        .add("remote", info.remote)
        .add("reason", reason)
        .add("code", close_with ? static_cast<int>(*close_with) : static_cast<int>(code))
        .add("messages_in", protocol->messages_in())
        .add("messages_out", messages_out)
        .add("duration_ms",
             std::chrono::duration<double, std::milli>(core::steady_clock::now() - opened).count());
    protocol.reset();
  }

  websocket::stream<tcp::socket&> ws;
  ws_services& services;
  http_request info;
  std::shared_ptr<ws_protocol> protocol;
  std::deque<std::pair<message_ptr, std::string_view>> outbox;
  std::size_t outbox_bytes = 0;
  core::notifier writer_wake, room, writer_ended;
  bool closing = false;
  bool writer_done = false;
  std::optional<websocket::close_code> close_with;
  std::string_view reason;  // why the session ended: a bounded metric label
  std::size_t messages_out = 0;
};

websocket_session::websocket_session(tcp::socket& socket, ws_services& services,
                                     http_request upgrade)
    : impl_(std::make_unique<impl>(socket, services, std::move(upgrade))) {}

websocket_session::~websocket_session() = default;

net::awaitable<void> websocket_session::run(
    beast::http::request<beast::http::string_body> upgrade) {
  return impl_->run(std::move(upgrade));
}

void websocket_session::shut_down() {
  impl_->begin_close(websocket::close_code::going_away, "shutdown");
}

}  // namespace gatherd::service
