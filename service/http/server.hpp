// The HTTP/1.1 server: a listener and one coroutine per connection, spread over the I/O threads,
// with keep-alive, header/body limits, read timeouts, a connection cap and graceful draining.
// Beast stays inside server.cpp: this header only needs Asio's io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "service/config.hpp"
#include "service/http/io_pool.hpp"

namespace gatherd::service {

class pipeline;
class metrics;
struct ws_services;

class server {
 public:
  // `websockets` serves GET /v1/ws once the API has answered its upgrade with 101.
  server(io_pool& io, const config& c, pipeline& api, metrics& m, ws_services& websockets);
  ~server();

  // Binds and listens; returns the bound address (the real port when `port` is 0).
  boost::asio::ip::tcp::endpoint listen(const std::string& host, std::uint16_t port);
  void start();

  // Shutdown, in order: stop accepting; drain (idle keep-alive connections close now, busy
  // ones after their response, WebSockets with 1001); after the grace, close_all().
  void stop_accepting();
  void drain();
  void close_all();
  std::size_t open_connections() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace gatherd::service
