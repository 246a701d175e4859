#include "libcore/redis/stream.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

namespace gatherd::core::redis {

awaitable<stream> stream::connect(const endpoint& where) {
  const auto ex = co_await net::this_coro::executor;
  if (where.kind == endpoint::transport::unix_socket) {
    unix_socket s(ex);
    co_await s.async_connect(net::local::stream_protocol::endpoint(where.path), net::use_awaitable);
    co_return stream(std::move(s));
  }
  net::ip::tcp::resolver resolver(ex);
  const auto addresses =
      co_await resolver.async_resolve(where.host, std::to_string(where.port), net::use_awaitable);
  tcp_socket s(ex);
  co_await net::async_connect(s, addresses, net::use_awaitable);
  // Pipelined commands are small writes that must leave at once, not wait for an ACK (Nagle).
  s.set_option(net::ip::tcp::no_delay(true));
  co_return stream(std::move(s));
}

awaitable<std::size_t> stream::read_some(net::mutable_buffer into) {
  return std::visit([&](auto& s) { return s.async_read_some(into, net::use_awaitable); }, socket_);
}

awaitable<void> stream::write(net::const_buffer bytes) {
  co_await std::visit([&](auto& s) { return net::async_write(s, bytes, net::use_awaitable); },
                      socket_);
}

void stream::close() {
  std::visit(
      [](auto& s) {
        boost::system::error_code ignored;
        s.shutdown(net::socket_base::shutdown_both, ignored);
        s.close(ignored);
      },
      socket_);
}

}  // namespace gatherd::core::redis
