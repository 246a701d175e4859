// One WebSocket connection (GET /v1/ws after its 101): Beast frames in and out, a bounded
// outbound queue, pings and timeouts. The protocol itself lives in protocol.hpp.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>

#include "service/http/http_message.hpp"

namespace gatherd::service {

struct ws_services;

class websocket_session {
 public:
  // `upgrade` is the upgrade request as the API saw it (credentials, remote, request id).
  websocket_session(boost::asio::ip::tcp::socket& socket, ws_services& services,
                    http_request upgrade);
  ~websocket_session();

  // Completes the handshake and runs the session until it is closed and all its state is gone.
  boost::asio::awaitable<void> run(
      boost::beast::http::request<boost::beast::http::string_body> upgrade);

  // The server is shutting down: close with 1001 (going away). Call on the session's thread.
  void shut_down();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace gatherd::service
