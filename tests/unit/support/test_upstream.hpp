// An HTTP/1.1 upstream for the http client tests, on 127.0.0.1 port 0 with its own io_context
// and thread, plain or TLS. It counts connections (open, peak, total, closed) so tests can see
// pooling from the server side. Endpoints:
//   /fixed              200 "hello"
//   /delay?ms=N         200 "late" after N ms (ends early if the client closes the connection)
//   /status/N           status N
//   /chunked            "hello world" in three chunks
//   /close              200 "bye" with Connection: close
//   /long?n=N           N bytes: 'a' + i % 26
//   /redirect/N         302 to /redirect/N-1, /redirect/0 is 200 "done"
//   /redirect-to?URL    302 to URL
//   /see-other          303 to /echo
//   /echo               200 "<method> <body>"
//   /headers            200 with the request headers, one "name: value" a line
//   /drop               200 "dropped", keep-alive advertised, then the connection is closed
//   /bigheader          200 with a 70 KiB header
#pragma once

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

namespace gatherd::test {

namespace upstream_detail {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
}  // namespace upstream_detail

class test_upstream {
 public:
  struct tls_files {
    std::string cert;
    std::string key;
  };

  explicit test_upstream(std::optional<tls_files> tls = std::nullopt)
      : acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    if (tls) {
      tls_.emplace(boost::asio::ssl::context::tls_server);
      tls_->use_certificate_chain_file(tls->cert);
      tls_->use_private_key_file(tls->key, boost::asio::ssl::context::pem);
    }
    boost::asio::co_spawn(ioc_, accept_loop(), boost::asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~test_upstream() {
    boost::asio::post(ioc_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      ioc_.stop();
    });
    thread_.join();
  }

  test_upstream(const test_upstream&) = delete;
  test_upstream& operator=(const test_upstream&) = delete;

  unsigned short port() const { return port_; }
  std::string url(const std::string& path, const std::string& host = "127.0.0.1") const {
    return (tls_ ? "https://" : "http://") + host + ":" + std::to_string(port_) + path;
  }

  int open() const { return open_; }
  int peak() const { return peak_; }
  int total() const { return total_; }
  int closed() const { return closed_; }

  // Polls until `closed() >= n` or `limit` passes.
  bool wait_closed(int n, std::chrono::milliseconds limit = std::chrono::seconds(3)) const {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (closed_ < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return closed_ >= n;
  }

 private:
  using awaitable = boost::asio::awaitable<void>;

  awaitable accept_loop() {
    using namespace upstream_detail;
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(net::as_tuple(net::use_awaitable));
      if (ec) co_return;
      net::co_spawn(ioc_, connection(std::move(socket)), net::detached);
    }
  }

  awaitable connection(upstream_detail::tcp::socket socket) {
    using namespace upstream_detail;
    const int now_open = ++open_;
    ++total_;
    int peak = peak_;
    while (now_open > peak && !peak_.compare_exchange_weak(peak, now_open)) {
    }
    if (tls_) {
      net::ssl::stream<tcp::socket> stream(std::move(socket), *tls_);
      auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server,
                                                  net::as_tuple(net::use_awaitable));
      if (!ec) co_await serve(stream);
    } else {
      co_await serve(socket);
    }
    --open_;
    ++closed_;
  }

  template <class Stream>
  awaitable serve(Stream& stream) {
    using namespace upstream_detail;
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [ec, n] =
          co_await http::async_read(stream, buffer, req, net::as_tuple(net::use_awaitable));
      if (ec) break;
      bool keep_alive = req.keep_alive();
      std::string target(req.target());
      std::string raw;  // a raw response, for what Beast would not produce
      http::response<http::string_body> res{http::status::ok, 11};
      res.set(http::field::content_type, "text/plain");
      if (target == "/fixed") {
        res.body() = "hello";
      } else if (target.starts_with("/delay?ms=")) {
        net::steady_timer timer(stream.get_executor(),
                                std::chrono::milliseconds(std::stoi(target.substr(10))));
        auto& lowest = beast::get_lowest_layer(stream);
        using namespace net::experimental::awaitable_operators;
        bool closed = false;
        try {
          auto which = co_await (timer.async_wait(net::use_awaitable) ||
                                 lowest.async_wait(tcp::socket::wait_read, net::use_awaitable));
          closed = which.index() == 1;  // the client went away (or sent more)
        } catch (const boost::system::system_error&) {
          closed = true;
        }
        if (closed) break;
        res.body() = "late";
      } else if (target.starts_with("/status/")) {
        res.result(std::stoi(target.substr(8)));
      } else if (target == "/chunked") {
        raw =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
      } else if (target == "/close") {
        res.body() = "bye";
        keep_alive = false;
      } else if (target.starts_with("/long?n=")) {
        const std::size_t size = std::stoul(target.substr(8));
        res.body().resize(size);
        for (std::size_t i = 0; i < size; ++i) res.body()[i] = static_cast<char>('a' + i % 26);
      } else if (target.starts_with("/redirect/")) {
        const int left = std::stoi(target.substr(10));
        if (left > 0) {
          res.result(http::status::found);
          res.set(http::field::location, "/redirect/" + std::to_string(left - 1));
        } else {
          res.body() = "done";
        }
      } else if (target.starts_with("/redirect-to?")) {
        res.result(http::status::found);
        res.set(http::field::location, target.substr(13));
      } else if (target == "/see-other") {
        res.result(http::status::see_other);
        res.set(http::field::location, "/echo");
      } else if (target == "/echo") {
        res.body() = std::string(req.method_string()) + " " + req.body();
      } else if (target == "/headers") {
        for (const auto& f : req) {
          res.body() += std::string(f.name_string()) + ": " + std::string(f.value()) + "\n";
        }
      } else if (target == "/drop") {
        res.body() = "dropped";
      } else if (target == "/bigheader") {
        res.set("X-Big", std::string(70 * 1024, 'x'));
      } else {
        res.result(http::status::not_found);
      }
      if (raw.empty()) {
        res.keep_alive(keep_alive);
        res.prepare_payload();
        http::response_serializer<http::string_body> serializer(res);
        boost::system::error_code wec;
        if (req.method() == http::verb::head) {  // the length, without the body
          auto [ec, n] = co_await http::async_write_header(stream, serializer,
                                                           net::as_tuple(net::use_awaitable));
          wec = ec;
        } else {
          auto [ec, n] =
              co_await http::async_write(stream, serializer, net::as_tuple(net::use_awaitable));
          wec = ec;
        }
        if (wec) break;
      } else {
        auto [wec, wn] =
            co_await net::async_write(stream, net::buffer(raw), net::as_tuple(net::use_awaitable));
        if (wec) break;
      }
      if (!keep_alive || target == "/drop") break;
    }
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream).close(ignored);
  }

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = acceptor_.local_endpoint().port();
  std::optional<boost::asio::ssl::context> tls_;
  std::atomic<int> open_{0}, peak_{0}, total_{0}, closed_{0};
  std::thread thread_;
};

}  // namespace gatherd::test
