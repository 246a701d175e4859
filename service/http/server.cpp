#include "service/http/server.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "service/api/context.hpp"
#include "service/http/pipeline.hpp"
#include "service/telemetry/log.hpp"
#include "service/telemetry/metrics.hpp"
#include "service/websocket/session.hpp"

namespace gatherd::service {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::use_awaitable;
constexpr auto tuple_awaitable = net::as_tuple(net::use_awaitable);

namespace {

using clock = std::chrono::steady_clock;

// One client connection. Its session and its watchdog run on the connection's io_context,
// which one thread runs: they never run concurrently.
//
// Read timeouts use a deadline checked by one watchdog timer per connection instead of a timer
// armed around every socket operation (beast::tcp_stream's way): a request only moves the
// deadline, and the watchdog re-arms itself when it wakes early, so the common path makes no
// timer system calls.
struct connection {
  explicit connection(tcp::socket s) : socket(std::move(s)), watchdog(socket.get_executor()) {}

  void expire_in(clock::duration d) {
    deadline = clock::now() + d;
    if (deadline < armed) watchdog.cancel();  // armed too late: wake the watchdog to re-arm
  }
  void expire_never() { deadline = clock::time_point::max(); }

  tcp::socket socket;
  net::steady_timer watchdog;
  clock::time_point deadline = clock::time_point::max();
  clock::time_point armed = clock::time_point::max();
  bool busy = false;               // a request is past its header: handled or being answered
  bool reading_body = false;       // a timeout now is answered with 408, not just a close
  bool body_timed_out = false;
  bool closed = false;             // the session has ended
  std::string client;              // the peer's address, for the per-client connection cap
  std::function<void()> on_drain;  // set while the connection is a WebSocket
};

// Completes once the client has closed its end (or the connection broke); never while the
// client is only waiting. Bytes of a pipelined next request mean the client is still there:
// then it waits until cancelled. (A client that half-closes after its request looks gone.)
net::awaitable<void> client_gone(tcp::socket& socket) {
  auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, tuple_awaitable);
  if (ec == net::error::operation_aborted) co_return;  // the answer is ready: stop watching
  if (!ec) {
    char byte;
    const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      net::steady_timer never(socket.get_executor(), clock::time_point::max());
      co_await never.async_wait(tuple_awaitable);
    }
  }
}

std::string remote_of(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

http_request to_request(const http::request<http::string_body>& in, const std::string& remote) {
  http_request req;
  req.method = std::string(in.method_string());
  req.target = std::string(in.target());
  req.content_type = std::string(in[http::field::content_type]);
  req.accept = std::string(in[http::field::accept]);
  req.authorization = std::string(in[http::field::authorization]);
  req.request_id = std::string(in["X-Request-Id"]);
  req.websocket_key = std::string(in[http::field::sec_websocket_key]);
  req.websocket_version = std::string(in[http::field::sec_websocket_version]);
  req.remote = remote;
  req.body = in.body();
  return req;
}

// The status line and header block of a response, written out directly: every header value
// comes from this service (request ids are checked to be printable), so no Beast serializer
// (and its allocation per field) is needed on the way out.
std::string response_head(const http_response& res, unsigned version, bool keep_alive) {
  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), "HTTP/{}.{} {} {}\r\nServer: gatherd\r\n", version / 10,
                 version % 10, res.status,
                 http::obsolete_reason(static_cast<http::status>(res.status)));
  if (!res.content_type.empty())
    fmt::format_to(std::back_inserter(out), "Content-Type: {}\r\n", res.content_type);
  for (const auto& [name, value] : res.headers)
    fmt::format_to(std::back_inserter(out), "{}: {}\r\n", name, value);
  if (res.stream) {
    if (version >= 11) out.append(std::string_view("Transfer-Encoding: chunked\r\n"));
  } else if (res.status != 204) {
    fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", res.body.size());
  }
  if (!keep_alive) {
    out.append(std::string_view("Connection: close\r\n"));
  } else if (version < 11) {
    out.append(std::string_view("Connection: keep-alive\r\n"));
  }
  out.append(std::string_view("\r\n"));
  return fmt::to_string(out);
}

// Sends a streamed body's pieces as they are produced: chunked on HTTP/1.1, raw until the
// connection closes on HTTP/1.0. Each piece has its own write deadline, none between pieces.
class chunk_writer : public body_writer {
 public:
  chunk_writer(connection& c, clock::duration timeout, bool chunked)
      : c_(c), timeout_(timeout), chunked_(chunked) {}

  net::awaitable<bool> write(std::string piece) override {
    if (error_ || piece.empty()) co_return !error_;
    const std::string size = chunked_ ? fmt::format("{:x}\r\n", piece.size()) : std::string();
    const std::array<net::const_buffer, 3> buffers{
        net::buffer(size), net::buffer(piece),
        chunked_ ? net::buffer("\r\n", 2) : net::const_buffer()};
    c_.expire_in(timeout_);
    auto [ec, n] = co_await net::async_write(c_.socket, buffers, tuple_awaitable);
    c_.expire_never();
    error_ = ec;
    co_return !error_;
  }

  net::awaitable<boost::system::error_code> finish() {
    if (error_ || !chunked_) co_return error_;
    c_.expire_in(timeout_);
    auto [ec, n] =
        co_await net::async_write(c_.socket, net::buffer("0\r\n\r\n", 5), tuple_awaitable);
    co_return ec;
  }

 private:
  connection& c_;
  clock::duration timeout_;
  bool chunked_;
  boost::system::error_code error_;
};

net::awaitable<boost::system::error_code> write_streamed(connection& c, const http_response& res,
                                                         unsigned version, bool keep_alive,
                                                         clock::duration timeout) {
  const std::string head = response_head(res, version, keep_alive);
  c.expire_in(timeout);
  auto [ec, n] = co_await net::async_write(c.socket, net::buffer(head), tuple_awaitable);
  if (ec) co_return ec;
  c.expire_never();
  chunk_writer writer(c, timeout, version >= 11);
  // A stream may pause long between pieces: stop it if the client leaves meanwhile.
  const auto ex = c.socket.get_executor();
  auto [order, stream_error, gone_error] =
      co_await net::experimental::make_parallel_group(
          net::co_spawn(ex, res.stream(writer), net::deferred),
          net::co_spawn(ex, client_gone(c.socket), net::deferred))
          .async_wait(net::experimental::wait_for_one(), net::use_awaitable);
  if (order[0] == 1) co_return net::error::connection_aborted;
  co_return co_await writer.finish();
}

net::awaitable<boost::system::error_code> write_response(tcp::socket& socket,
                                                         const http_response& res, unsigned version,
                                                         bool keep_alive) {
  const std::string head = response_head(res, version, keep_alive);
  const std::array<net::const_buffer, 2> buffers{net::buffer(head), net::buffer(res.body)};
  auto [ec, n] = co_await net::async_write(socket, buffers, tuple_awaitable);
  co_return ec;
}

// Why reading a request failed: a client error to answer before closing, or just a close.
struct read_failure {
  unsigned status = 0;  // 0: close without answering (peer gone, timeout, shutdown)
  std::string code, detail;
};

read_failure classify(const beast::error_code& ec, const config& c) {
  if (ec == http::error::header_limit) {
    return {431, "headers_too_large",
            "the request header block exceeds " + std::to_string(c.max_header_bytes) + " bytes"};
  }
  if (ec == http::error::buffer_overflow) {  // see read_buffer_limit()
    return {431, "headers_too_large",
            "the request's header or chunked trailer section exceeds " +
                std::to_string(c.max_header_bytes) + " bytes"};
  }
  if (ec == http::error::body_limit) {
    return {413, "payload_too_large",
            "the request body exceeds " + std::to_string(c.max_body_bytes) + " bytes"};
  }
  const beast::error_code end_of_stream = http::error::end_of_stream;
  if (ec.category() == end_of_stream.category() && ec != http::error::end_of_stream &&
      ec != http::error::partial_message) {
    return {400, "invalid_request", "malformed HTTP request: " + ec.message()};
  }
  return {};
}

// What a request's framing must satisfy beyond what Beast checks (RFC 9112): one Host on
// HTTP/1.1 (and never two), and no transfer coding but a lone `chunked`, which HTTP/1.0 has not.
// An unsupported coding is a 400 here, not RFC 9112's suggested 501: our 5xx mean our failures.
read_failure check_framing(const http::request<http::string_body>& m) {
  const auto hosts = m.count(http::field::host);
  if (hosts > 1 || (hosts == 0 && m.version() >= 11)) {
    return {400, "invalid_request",
            hosts > 1 ? "the request has more than one Host header"
                      : "an HTTP/1.1 request needs a Host header"};
  }
  if (m.count(http::field::transfer_encoding) == 0) return {};
  if (m.version() < 11) {
    return {400, "invalid_request", "HTTP/1.0 has no Transfer-Encoding: send a Content-Length"};
  }
  std::string codings;
  const auto [first, last] = m.equal_range(http::field::transfer_encoding);
  for (auto f = first; f != last; ++f) {
    if (!codings.empty()) codings += ',';
    codings += std::string(f->value());
  }
  std::erase_if(codings, [](char ch) { return ch == ' ' || ch == '\t'; });
  if (!beast::iequals(codings, "chunked")) {
    return {400, "unsupported_transfer_coding",
            "only 'Transfer-Encoding: chunked' is supported, not '" + codings + "'"};
  }
  return {};
}

// The read buffer holds only what the parser has not consumed yet: a header block, a chunk
// header or a chunked trailer section (bodies are consumed as they arrive). Its cap is what makes
// trailers count against --max-header-bytes; Beast's own header_limit does not cover them.
std::size_t read_buffer_limit(const config& c) {
  return c.max_header_bytes + 4096;
}

}  // namespace

struct server::impl {
  impl(io_pool& io, const config& c, pipeline& api, metrics& m, ws_services& ws)
      : io(io), cfg(c), api(api), meter(m), websockets(ws), acceptor(io.main()) {}

  net::awaitable<void> accept_loop();
  // Registers an accepted connection, or says which cap refuses it (a metric label).
  const char* admit(const std::shared_ptr<connection>& c);
  void forget(const std::shared_ptr<connection>& c);
  net::awaitable<void> session(std::shared_ptr<connection> c);
  net::awaitable<void> watch(std::shared_ptr<connection> c);
  net::awaitable<void> run_websocket(connection& c, http::request<http::string_body> upgrade,
                                     http_request info);
  net::awaitable<void> answer_and_close(connection& c,
                                        const http::request_parser<http::string_body>& parser,
                                        const read_failure& failure, const std::string& remote);
  template <class F>
  void for_each_connection(F f);

  io_pool& io;
  const config& cfg;
  pipeline& api;
  metrics& meter;
  ws_services& websockets;
  tcp::acceptor acceptor;
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> open{0};
  std::mutex mutex;
  std::unordered_set<std::shared_ptr<connection>> connections;  // (under mutex)
  std::unordered_map<std::string, std::size_t> per_client;       // open connections (under mutex)
};

net::awaitable<void> server::impl::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(io.next(), tuple_awaitable);
    if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {  // e.g. out of file descriptors: back off instead of spinning
      log::warn("http.accept_failed").add("error", ec.message());
      net::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(tuple_awaitable);
      continue;
    }
    auto c = std::make_shared<connection>(std::move(socket));
    if (const char* refused = admit(c)) {
      meter.connection_rejected(refused);
      boost::system::error_code ignored;
      c->socket.close(ignored);
      continue;
    }
    c->socket.set_option(tcp::no_delay(true), ec);
    meter.connection_opened();
    net::co_spawn(c->socket.get_executor(), session(c), [this, c](std::exception_ptr) {
      forget(c);
      meter.connection_closed();
    });
  }
}

const char* server::impl::admit(const std::shared_ptr<connection>& c) {
  if (open.load() >= cfg.max_connections) return "max_connections";
  boost::system::error_code ec;
  c->client = c->socket.remote_endpoint(ec).address().to_string();
  std::lock_guard lock(mutex);
  if (cfg.max_connections_per_client > 0) {
    auto& held = per_client[c->client];
    if (held >= cfg.max_connections_per_client) return "max_connections_per_client";
    ++held;
  }
  connections.insert(c);
  ++open;
  return nullptr;
}

void server::impl::forget(const std::shared_ptr<connection>& c) {
  std::lock_guard lock(mutex);
  connections.erase(c);
  if (cfg.max_connections_per_client > 0) {
    const auto it = per_client.find(c->client);
    if (it != per_client.end() && --it->second == 0) per_client.erase(it);
  }
  --open;
}

net::awaitable<void> server::impl::watch(std::shared_ptr<connection> c) {
  while (!c->closed) {
    if (clock::now() >= c->deadline && c->reading_body) {
      // A slow body gets a 408 before the close: end the read, leave time to write the answer.
      c->reading_body = false;
      c->body_timed_out = true;
      c->deadline = clock::now() + std::chrono::seconds(2);
      boost::system::error_code ignored;
      c->socket.cancel(ignored);
    } else if (clock::now() >= c->deadline) {  // too slow: drop it; its pending I/O ends at once
      boost::system::error_code ignored;
      c->socket.close(ignored);
      co_return;
    }
    c->armed = c->deadline;
    c->watchdog.expires_at(c->deadline);
    co_await c->watchdog.async_wait(tuple_awaitable);
  }
}

net::awaitable<void> server::impl::session(std::shared_ptr<connection> c) {
  tcp::socket& stream = c->socket;
  const std::string remote = remote_of(stream);
  beast::flat_buffer buffer(read_buffer_limit(cfg));
  c->expire_in(cfg.header_timeout);
  net::co_spawn(stream.get_executor(), watch(c), net::detached);
  while (!draining.load()) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
    parser.body_limit(cfg.max_body_bytes);

    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
    if (!ec) {
      c->busy = true;
      if (const read_failure bad = check_framing(parser.get()); bad.status) {
        co_await answer_and_close(*c, parser, bad, remote);
        break;
      }
      if (parser.get()[http::field::expect] == "100-continue") {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        std::tie(ec, n) = co_await http::async_write(stream, go_on, tuple_awaitable);
      }
    }
    if (!ec && !parser.is_done()) {
      c->expire_in(cfg.body_timeout);
      c->reading_body = true;
      std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
      c->reading_body = false;
    }
    if (ec) {
      const read_failure failure =
          c->body_timed_out
              ? read_failure{408, "body_timeout",
                             "the request body did not arrive within " +
                                 std::to_string(cfg.body_timeout.count()) + " ms"}
              : classify(ec, cfg);
      if (failure.status) co_await answer_and_close(*c, parser, failure, remote);
      break;
    }

    c->expire_never();  // handlers may long-poll; their own limits bound them
    const auto& message = parser.get();
    http_request request = to_request(message, remote);
    request.websocket_upgrade = beast::websocket::is_upgrade(message);
    request.client_gone = [&stream] { return client_gone(stream); };
    http_response res = co_await api.handle(std::move(request));
    if (res.status == status_client_closed) {  // nobody to answer
      if (res.undelivered) res.undelivered();
      break;
    }
    if (res.status == 101) {
      http_request info = to_request(message, remote);
      info.request_id = res.headers.back().second;  // the pipeline's X-Request-Id
      co_await run_websocket(*c, parser.release(), std::move(info));
      break;
    }
    // A streamed body on HTTP/1.0 ends with the connection.
    const bool keep_alive =
        message.keep_alive() && !draining.load() && (!res.stream || message.version() >= 11);
    // One deadline covers writing the response and receiving the next request's header.
    c->expire_in(cfg.header_timeout);
    if (res.stream) {
      ec = co_await write_streamed(*c, res, message.version(), keep_alive, cfg.body_timeout);
    } else {
      ec = co_await write_response(stream, res, message.version(), keep_alive);
    }
    if (ec && res.undelivered) res.undelivered();
    c->busy = false;
    if (ec || !keep_alive) break;
  }
  c->closed = true;
  c->watchdog.cancel();
  beast::error_code ignored;
  stream.shutdown(tcp::socket::shutdown_send, ignored);
  stream.close(ignored);
}

net::awaitable<void> server::impl::run_websocket(connection& c,
                                                 http::request<http::string_body> upgrade,
                                                 http_request info) {
  c.busy = true;
  c.expire_never();  // the session has its own idle timeout and pings
  info.body.clear();
  websocket_session session(c.socket, websockets, std::move(info));
  c.on_drain = [&session] { session.shut_down(); };
  if (draining.load()) session.shut_down();
  co_await session.run(std::move(upgrade));
  c.on_drain = nullptr;
  api.api().websockets.fetch_sub(1);  // the slot its 101 reserved
}

net::awaitable<void> server::impl::answer_and_close(
    connection& c, const http::request_parser<http::string_body>& parser,
    const read_failure& failure, const std::string& remote) {
  http_request partial;
  if (parser.is_header_done()) partial = to_request(parser.get(), remote);
  partial.remote = remote;
  partial.body.clear();
  http_response res = api.reject(partial, failure.status, failure.code, failure.detail);
  c.expire_in(cfg.body_timeout);
  if (co_await write_response(c.socket, res, 11, false)) co_return;
  // Lingering close: the client may still be sending the body we refused. Closing with unread
  // data would reset the connection before it reads our answer, so half-close and drain a while.
  boost::system::error_code ec;
  c.socket.shutdown(tcp::socket::shutdown_send, ec);
  c.expire_in(std::chrono::seconds(2));
  std::array<char, 16384> sink;
  for (std::size_t drained = 0; !ec && drained < (8u << 20);) {
    auto [read_ec, n] = co_await c.socket.async_read_some(net::buffer(sink), tuple_awaitable);
    ec = read_ec;
    drained += n;
  }
}

template <class F>
void server::impl::for_each_connection(F f) {
  std::lock_guard lock(mutex);
  for (const auto& c : connections) {
    net::post(c->socket.get_executor(), [c, f] { f(*c); });
  }
}

server::server(io_pool& io, const config& c, pipeline& api, metrics& m, ws_services& websockets)
    : impl_(std::make_unique<impl>(io, c, api, m, websockets)) {}

server::~server() = default;

tcp::endpoint server::listen(const std::string& host, std::uint16_t port) {
  tcp::endpoint endpoint(net::ip::make_address(host), port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(net::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(net::socket_base::max_listen_connections);
  return acceptor.local_endpoint();
}

void server::start() {
  net::co_spawn(impl_->acceptor.get_executor(), impl_->accept_loop(), [](std::exception_ptr e) {
    if (e) log::error("http.accept_loop_failed");
  });
}

void server::stop_accepting() {
  net::post(impl_->acceptor.get_executor(), [this] {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
  });
}

void server::drain() {
  impl_->draining.store(true);
  impl_->for_each_connection([](connection& c) {
    boost::system::error_code ignored;
    if (c.on_drain) {
      c.on_drain();  // a WebSocket: close with 1001
    } else if (!c.busy) {
      c.socket.cancel(ignored);  // idle between requests: its header read ends now
    }
  });
}

void server::close_all() {
  impl_->for_each_connection([](connection& c) {
    boost::system::error_code ignored;
    c.socket.cancel(ignored);
  });
}

std::size_t server::open_connections() const {
  return impl_->open.load();
}

}  // namespace gatherd::service
