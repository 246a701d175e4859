// A connected byte stream to Redis, TCP or a unix socket, behind one small interface so the
// connection and the subscriber never care which. Not thread-safe: use it from the executor
// (strand) it was connected on.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cstddef>
#include <variant>

#include "libcore/asio.hpp"
#include "libcore/redis/endpoint.hpp"

namespace gatherd::core::redis {

class stream {
 public:
  // Resolves (TCP) and connects, on the calling coroutine's executor; throws
  // boost::system::system_error. No deadline of its own: the caller bounds it.
  static awaitable<stream> connect(const endpoint& where);

  // Throws boost::system::system_error (net::error::eof when Redis closed the connection).
  awaitable<std::size_t> read_some(net::mutable_buffer into);
  // All of `bytes`, or throws boost::system::system_error.
  awaitable<void> write(net::const_buffer bytes);

  // Ends pending reads and writes (operation_aborted); idempotent, never throws.
  void close();

 private:
  using tcp_socket = net::ip::tcp::socket;
  using unix_socket = net::local::stream_protocol::socket;
  explicit stream(tcp_socket s) : socket_(std::move(s)) {}
  explicit stream(unix_socket s) : socket_(std::move(s)) {}

  std::variant<tcp_socket, unix_socket> socket_;
};

}  // namespace gatherd::core::redis
