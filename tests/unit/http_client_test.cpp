// The Beast http client against a real in-test upstream on loopback (plain and TLS).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "libcore/fetch/beast_http_client.hpp"
#include "libcore/fetch/url.hpp"
#include "tests/unit/support/test_pki.hpp"
#include "tests/unit/support/test_upstream.hpp"

namespace gatherd::core::fetch {
namespace {

using namespace std::chrono_literals;
using test::test_upstream;
using ::testing::HasSubstr;

http_client_config local_config() {
  http_client_config config;
  config.egress.allow_private = true;
  return config;
}

http_request get(std::string url) {
  http_request r;
  r.url = std::move(url);
  r.timeout = 5000ms;
  return r;
}

// The outcome of one request: the response, or the type and message of its error.
struct outcome {
  std::optional<http_response> response;
  std::string error;  // fetch_error type, "aborted" for operation_aborted
  std::string message;
};

class HttpClient : public ::testing::Test {
 protected:
  HttpClient() : work_(ioc_.get_executor()) {
    // Two threads: requests and the pool really run concurrently.
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }

  ~HttpClient() override {
    client_.reset();
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
  }

  http_client& make_client(http_client_config config = local_config()) {
    client_ = make_beast_http_client(ioc_.get_executor(), std::move(config));
    return *client_;
  }

  // Runs `a` on a strand of the client's io_context and waits for it (test thread).
  template <class T>
  T run(awaitable<T> a, std::chrono::seconds limit = 15s) {
    auto future = net::co_spawn(net::make_strand(ioc_), std::move(a), net::use_future);
    if (future.wait_for(limit) != std::future_status::ready) {
      throw std::runtime_error("the request did not complete in time");
    }
    return future.get();
  }

  static awaitable<outcome> attempt(http_client& client, http_request r) {
    outcome out;
    try {
      auto response = co_await client.send(std::move(r));
      out.response = std::move(response);
    } catch (const fetch_error& e) {
      out.error = e.type();
      out.message = e.what();
    } catch (const boost::system::system_error& e) {
      out.error = e.code() == net::error::operation_aborted ? "aborted" : e.what();
    }
    co_return out;
  }

  outcome fetch(http_request r) { return run(attempt(*client_, std::move(r))); }

  // Fetches and expects a response, failing the test with the error otherwise.
  http_response ok(http_request r) {
    auto out = fetch(std::move(r));
    if (!out.response) throw std::runtime_error("fetch failed: " + out.error + ": " + out.message);
    return *out.response;
  }

  static bool eventually(const std::function<bool()>& condition,
                         std::chrono::milliseconds limit = 3s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  std::unique_ptr<http_client> client_;
  test_upstream upstream_;
};

TEST_F(HttpClient, ReusesAKeepAliveConnection) {
  auto& client = make_client();
  for (int i = 0; i < 5; ++i) {
    auto r = ok(get(upstream_.url("/fixed")));
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "hello");
    EXPECT_EQ(r.reused_connection, i > 0) << i;
    EXPECT_EQ(r.url, upstream_.url("/fixed"));
  }
  EXPECT_EQ(upstream_.total(), 1);
  EXPECT_EQ(client.stats().connections_opened, 1u);
  EXPECT_EQ(client.stats().connections_reused, 4u);
  EXPECT_EQ(client.stats().connections_open, 1u);
}

TEST_F(HttpClient, SendsDefaultAndCallerHeaders) {
  make_client();
  auto r = get(upstream_.url("/headers"));
  r.headers = {{"X-Trace", "abc"}, {"user-agent", "custom/1"}};
  auto response = ok(r);
  EXPECT_THAT(response.body, HasSubstr("X-Trace: abc"));
  EXPECT_THAT(response.body, HasSubstr("user-agent: custom/1"));
  EXPECT_THAT(response.body, ::testing::Not(HasSubstr("gatherd")));
  EXPECT_THAT(response.body,
              HasSubstr("Host: 127.0.0.1:" + std::to_string(upstream_.port()) + "\n"));
  response = ok(get(upstream_.url("/headers")));
  EXPECT_THAT(response.body, HasSubstr("User-Agent: gatherd\n"));
}

TEST_F(HttpClient, SendsABodyWithAnyMethod) {
  make_client();
  auto r = get(upstream_.url("/echo"));
  r.method = "PURGE";
  r.body = "payload";
  EXPECT_EQ(ok(r).body, "PURGE payload");
}

TEST_F(HttpClient, RejectsInvalidRequestsAndUrls) {
  make_client();
  auto r = get(upstream_.url("/fixed"));
  r.method = "GE T";
  EXPECT_EQ(fetch(r).error, "invalid_request");
  r = get(upstream_.url("/fixed"));
  r.headers = {{"X-Evil", "a\r\nInjected: yes"}};
  EXPECT_EQ(fetch(r).error, "invalid_request");
  r.headers = {{"Bad Name", "x"}};
  EXPECT_EQ(fetch(r).error, "invalid_request");
  for (const char* url : {"ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "/relative",
                          "http:///nohost", "http://127.0.0.1:99999/", "not a url"}) {
    EXPECT_EQ(fetch(get(url)).error, "invalid_url") << url;
  }
  // Hosts that decode to what a host may not hold, and hosts followed by neither a port nor a
  // path (issue 14: a header injection and a URL confusion).
  const std::string port = std::to_string(upstream_.port());
  for (const std::string url :
       {"http://localhost%00%0d%0aX-Injected%3a%20yes:" + port + "/a",
        "http://localhost%0d%0a%0d%0aGET%20/b:" + port + "/a",
        "http://127.0.0.1%00.example.com:" + port + "/a", "http://127.0.0.1%20:" + port + "/a",
        "http://local%09host:" + port + "/a"}) {
    EXPECT_FALSE(try_parse_fetch_url(url)) << url;
    EXPECT_EQ(fetch(get(url)).error, "invalid_url") << url;
  }
  EXPECT_EQ(upstream_.total(), 0);
}

TEST_F(HttpClient, PerOriginCapThrottlesConcurrentRequests) {
  auto config = local_config();
  config.max_connections_per_origin = 4;
  auto& client = make_client(config);
  std::vector<std::future<outcome>> futures;
  for (int i = 0; i < 20; ++i) {
    futures.push_back(net::co_spawn(net::make_strand(ioc_),
                                    attempt(client, get(upstream_.url("/delay?ms=30"))),
                                    net::use_future));
  }
  for (auto& f : futures) {
    ASSERT_EQ(f.wait_for(15s), std::future_status::ready);
    auto out = f.get();
    ASSERT_TRUE(out.response) << out.error << ": " << out.message;
    EXPECT_EQ(out.response->body, "late");
  }
  EXPECT_EQ(upstream_.peak(), 4);  // never more than the cap, and the cap was reached
  EXPECT_EQ(upstream_.total(), 4);
  EXPECT_EQ(client.stats().connections_reused, 16u);
}

TEST_F(HttpClient, ServerWideCapClosesAnIdleConnectionOfAnotherOrigin) {
  auto config = local_config();
  config.max_connections = 1;
  auto& client = make_client(config);
  ok(get(upstream_.url("/fixed")));
  ok(get(upstream_.url("/fixed", "localhost")));  // another origin: evicts the idle one
  EXPECT_EQ(upstream_.total(), 2);
  EXPECT_TRUE(upstream_.wait_closed(1));
  EXPECT_EQ(client.stats().connections_open, 1u);
}

TEST_F(HttpClient, ACancelledWaiterLeavesNoTrace) {
  auto config = local_config();
  config.max_connections_per_origin = 1;
  auto& client = make_client(config);
  auto strand = net::make_strand(ioc_);
  auto first =
      net::co_spawn(strand, attempt(client, get(upstream_.url("/delay?ms=300"))), net::use_future);
  std::this_thread::sleep_for(50ms);
  // The second waits for the only connection and is cancelled while it waits.
  net::cancellation_signal cancel;
  auto second = net::co_spawn(strand, attempt(client, get(upstream_.url("/fixed"))),
                              net::bind_cancellation_slot(cancel.slot(), net::use_future));
  auto third =
      net::co_spawn(strand, attempt(client, get(upstream_.url("/fixed"))), net::use_future);
  std::this_thread::sleep_for(50ms);
  net::post(strand, [&] { cancel.emit(net::cancellation_type::terminal); });
  ASSERT_EQ(second.wait_for(1s), std::future_status::ready);  // at once, not after the first
  EXPECT_EQ(second.get().error, "aborted");
  ASSERT_EQ(third.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(third.get().response);
  EXPECT_TRUE(first.get().response);
  EXPECT_EQ(upstream_.total(), 1);
  EXPECT_EQ(ok(get(upstream_.url("/fixed"))).body, "hello");  // the slot was not leaked
}

TEST_F(HttpClient, BodyCapCutsExactlyAndTheNextRequestWorks) {
  auto& client = make_client();
  auto r = get(upstream_.url("/long?n=100000"));
  r.max_body_bytes = 1000;
  auto response = ok(r);
  EXPECT_EQ(response.status, 200u);
  ASSERT_EQ(response.body.size(), 1000u);
  EXPECT_TRUE(response.truncated);
  EXPECT_EQ(response.body.substr(0, 3), "abc");
  EXPECT_EQ(response.body[999], static_cast<char>('a' + 999 % 26));
  EXPECT_TRUE(upstream_.wait_closed(1));  // a body not read to the end: not pooled
  EXPECT_EQ(ok(get(upstream_.url("/fixed"))).body, "hello");
  EXPECT_EQ(upstream_.total(), 2);

  r = get(upstream_.url("/long?n=1000"));  // exactly the cap: complete, and pooled
  r.max_body_bytes = 1000;
  response = ok(r);
  EXPECT_EQ(response.body.size(), 1000u);
  EXPECT_FALSE(response.truncated);
  EXPECT_TRUE(response.reused_connection);
  EXPECT_EQ(client.stats().connections_open, 1u);
}

TEST_F(HttpClient, ReadsChunkedBodies) {
  make_client();
  auto response = ok(get(upstream_.url("/chunked")));
  EXPECT_EQ(response.body, "hello world");
  EXPECT_FALSE(response.truncated);
  EXPECT_TRUE(ok(get(upstream_.url("/fixed"))).reused_connection);
}

TEST_F(HttpClient, ConnectionCloseIsNotPooled) {
  auto& client = make_client();
  EXPECT_EQ(ok(get(upstream_.url("/close"))).body, "bye");
  auto second = ok(get(upstream_.url("/close")));
  EXPECT_FALSE(second.reused_connection);
  EXPECT_EQ(upstream_.total(), 2);
  EXPECT_EQ(client.stats().connections_open, 0u);
  EXPECT_EQ(client.stats().connections_reused, 0u);
}

TEST_F(HttpClient, HeadRequestsHaveNoBody) {
  make_client();
  auto r = get(upstream_.url("/long?n=5000"));
  r.method = "HEAD";
  auto response = ok(r);
  EXPECT_EQ(response.body, "");
  EXPECT_TRUE(ok(get(upstream_.url("/fixed"))).reused_connection);
}

TEST_F(HttpClient, OversizedHeaderBlockIsAProtocolError) {
  make_client();
  EXPECT_EQ(fetch(get(upstream_.url("/bigheader"))).error, "protocol");
}

TEST_F(HttpClient, TimesOutInAboutTheTimeout) {
  make_client();
  auto r = get(upstream_.url("/delay?ms=3000"));
  r.timeout = 200ms;
  const auto start = std::chrono::steady_clock::now();
  auto out = fetch(r);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(out.error, "timeout") << out.message;
  EXPECT_GE(elapsed, 180ms);
  EXPECT_LT(elapsed, 1500ms);
  EXPECT_TRUE(upstream_.wait_closed(1));  // the connection was abandoned, not left pending
}

TEST_F(HttpClient, RefusedConnectionIsAConnectError) {
  unsigned short port;
  {
    net::io_context scratch;
    net::ip::tcp::acceptor a(scratch, {net::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  make_client();
  auto out = fetch(get("http://127.0.0.1:" + std::to_string(port) + "/"));
  EXPECT_EQ(out.error, "connect") << out.message;
  EXPECT_EQ(client_->stats().connections_open, 0u);
}

TEST_F(HttpClient, UnresolvableNameIsADnsError) {
  make_client();
  auto r = get("http://nonexistent.invalid/");
  r.timeout = 10000ms;
  auto out = fetch(r);
  EXPECT_EQ(out.error, "dns") << out.message;
}

TEST_F(HttpClient, EgressGuardRefusesPrivateAddresses) {
  auto& client = make_client(http_client_config{});
  for (const auto& url : {upstream_.url("/fixed"), upstream_.url("/fixed", "localhost"),
                          upstream_.url("/fixed", "[::1]")}) {
    auto out = fetch(get(url));
    EXPECT_EQ(out.error, "fetch_denied") << url;
    // The host as given, never what a name resolved to (that would map internal DNS).
    if (url.find("localhost") != std::string::npos) {
      EXPECT_THAT(out.message, ::testing::HasSubstr("localhost")) << url;
      EXPECT_THAT(out.message, ::testing::Not(::testing::ContainsRegex("127.0.0.1|::1"))) << url;
    } else {
      EXPECT_THAT(out.message, ::testing::ContainsRegex("127.0.0.1|::1")) << url;
    }
  }
  EXPECT_EQ(client.stats().egress_denied, 3u);
  EXPECT_EQ(upstream_.total(), 0);
}

TEST_F(HttpClient, AllowHostsLetsALocalNameThrough) {
  http_client_config config;
  config.egress.allow_hosts = {"LOCALHOST"};
  make_client(config);
  EXPECT_EQ(ok(get(upstream_.url("/fixed", "localhost"))).body, "hello");
  EXPECT_EQ(fetch(get(upstream_.url("/fixed"))).error, "fetch_denied");  // not the literal
}

TEST_F(HttpClient, EgressGuardAppliesToRedirects) {
  http_client_config config;
  config.egress.allow_hosts = {"localhost"};
  auto& client = make_client(config);
  // localhost is allowed; its redirect to the 127.0.0.1 literal is not.
  auto r = get(upstream_.url("/redirect-to?" + upstream_.url("/fixed"), "localhost"));
  r.max_redirects = 3;
  auto out = fetch(r);
  EXPECT_EQ(out.error, "fetch_denied") << out.message;
  EXPECT_EQ(client.stats().egress_denied, 1u);
  EXPECT_EQ(upstream_.total(), 1);  // the first hop only
}

TEST_F(HttpClient, FollowsRedirectsOnlyWhenAsked) {
  make_client();
  auto r = get(upstream_.url("/redirect/3"));
  auto response = ok(r);  // max_redirects = 0: the 302 is the result
  EXPECT_EQ(response.status, 302u);
  EXPECT_EQ(response.url, upstream_.url("/redirect/3"));

  r.max_redirects = 3;
  response = ok(r);
  EXPECT_EQ(response.status, 200u);
  EXPECT_EQ(response.body, "done");
  EXPECT_EQ(response.url, upstream_.url("/redirect/0"));
  EXPECT_EQ(upstream_.total(), 1);  // every hop on the pooled connection

  r.max_redirects = 2;
  EXPECT_EQ(fetch(r).error, "redirects");
}

TEST_F(HttpClient, SeeOtherSwitchesToGetWithoutBody) {
  make_client();
  auto r = get(upstream_.url("/see-other"));
  r.method = "POST";
  r.body = "data";
  r.max_redirects = 1;
  EXPECT_EQ(ok(r).body, "GET ");
}

TEST_F(HttpClient, CancellationClosesTheConnectionAndRethrows) {
  auto& client = make_client();
  auto cancelled = [](http_client& c, http_request r) -> awaitable<outcome> {
    auto ex = co_await net::this_coro::executor;
    net::steady_timer timer(ex, 100ms);
    auto [order, error, response, timer_ec] =
        co_await net::experimental::make_parallel_group(
            net::co_spawn(ex, c.send(std::move(r)), net::deferred), timer.async_wait(net::deferred))
            .async_wait(net::experimental::wait_for_one(), net::use_awaitable);
    outcome out;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const boost::system::system_error& e) {
        out.error = e.code() == net::error::operation_aborted ? "aborted" : e.what();
      } catch (const std::exception& e) {
        out.error = e.what();
      }
    }
    co_return out;
  };
  const auto start = std::chrono::steady_clock::now();
  auto out = run(cancelled(client, get(upstream_.url("/delay?ms=5000"))));
  EXPECT_EQ(out.error, "aborted");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(upstream_.wait_closed(1, 2s));  // the upstream saw the connection close
  EXPECT_EQ(client.stats().connections_open, 0u);
}

TEST_F(HttpClient, RetriesOnceWhenAPooledConnectionIsStale) {
  auto& client = make_client();
  EXPECT_EQ(ok(get(upstream_.url("/drop"))).body, "dropped");  // pooled, then closed upstream
  ASSERT_TRUE(upstream_.wait_closed(1));
  auto response = ok(get(upstream_.url("/fixed")));
  EXPECT_EQ(response.body, "hello");
  EXPECT_FALSE(response.reused_connection);
  EXPECT_EQ(upstream_.total(), 2);
  EXPECT_EQ(client.stats().connections_opened, 2u);
}

TEST_F(HttpClient, IdleConnectionsExpire) {
  auto config = local_config();
  config.idle_timeout = 100ms;
  auto& client = make_client(config);
  ok(get(upstream_.url("/fixed")));
  EXPECT_EQ(client.stats().connections_open, 1u);
  EXPECT_TRUE(eventually([&] { return client.stats().connections_open == 0; }));
  EXPECT_TRUE(upstream_.wait_closed(1));
  EXPECT_FALSE(ok(get(upstream_.url("/fixed"))).reused_connection);
}

TEST_F(HttpClient, DestroyingTheClientClosesIdleConnections) {
  make_client();
  ok(get(upstream_.url("/fixed")));
  client_.reset();
  EXPECT_TRUE(upstream_.wait_closed(1));
}

TEST(HttpClientShutdown, ClientOutlivesAStoppedIoContext) {
  test_upstream upstream;
  net::io_context ioc;
  auto client = make_beast_http_client(ioc.get_executor(), local_config());
  auto idle = net::co_spawn(ioc, client->send(get(upstream.url("/fixed"))), net::use_future);
  auto pending =
      net::co_spawn(ioc, client->send(get(upstream.url("/delay?ms=5000"))), net::use_future);
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (idle.wait_for(0s) != std::future_status::ready &&
         std::chrono::steady_clock::now() < until) {
    ioc.run_for(10ms);
  }
  ASSERT_EQ(idle.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(idle.get().body, "hello");
  ioc.run_for(50ms);  // the second request is now waiting for its response
  ioc.stop();
  client.reset();  // then the io_context is destroyed with the request suspended: ASan-clean
}

class HttpClientTls : public ::testing::Test {
 protected:
  static awaitable<outcome> attempt(http_client& client, http_request r) {
    outcome out;
    try {
      auto response = co_await client.send(std::move(r));
      out.response = std::move(response);
    } catch (const fetch_error& e) {
      out.error = e.type();
      out.message = e.what();
    }
    co_return out;
  }

  static void run_until(net::io_context& ioc, const std::function<bool()>& done) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < until) ioc.run_for(5ms);
  }

  outcome fetch(http_client_config config, const std::string& url) {
    net::io_context ioc;
    auto client = make_beast_http_client(ioc.get_executor(), std::move(config));
    auto future = net::co_spawn(ioc, attempt(*client, get(url)), net::use_future);
    run_until(ioc, [&] { return future.wait_for(0s) == std::future_status::ready; });
    return future.get();
  }
};

TEST_F(HttpClientTls, VerifiesAgainstTheConfiguredCa) {
  test::test_pki pki("DNS:localhost,IP:127.0.0.1");
  test_upstream upstream(test_upstream::tls_files{pki.cert_file(), pki.key_file()});
  auto config = local_config();
  config.ca_file = pki.ca_file();
  for (const auto& url : {upstream.url("/fixed", "localhost"), upstream.url("/fixed")}) {
    auto out = fetch(config, url);
    ASSERT_TRUE(out.response) << url << ": " << out.error << ": " << out.message;
    EXPECT_EQ(out.response->body, "hello");
  }
  net::io_context ioc;  // keep-alive over TLS too
  auto client = make_beast_http_client(ioc.get_executor(), config);
  std::vector<http_response> responses;
  auto three = [&]() -> awaitable<void> {  // named: its captures must outlive the coroutine
    for (int i = 0; i < 3; ++i) {
      auto r = co_await client->send(get(upstream.url("/chunked", "localhost")));
      responses.push_back(std::move(r));
    }
  };
  net::co_spawn(ioc, three(), net::detached);
  run_until(ioc, [&] { return responses.size() == 3; });
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(responses[2].body, "hello world");
  EXPECT_TRUE(responses[2].reused_connection);
}

TEST_F(HttpClientTls, UnknownCaIsATlsError) {
  test::test_pki pki("DNS:localhost,IP:127.0.0.1");
  test_upstream upstream(test_upstream::tls_files{pki.cert_file(), pki.key_file()});
  auto out = fetch(local_config(), upstream.url("/fixed", "localhost"));  // system CAs
  EXPECT_EQ(out.error, "tls") << out.message;
}

TEST_F(HttpClientTls, NameMismatchIsATlsError) {
  test::test_pki pki("DNS:other.test");
  test_upstream upstream(test_upstream::tls_files{pki.cert_file(), pki.key_file()});
  auto config = local_config();
  config.ca_file = pki.ca_file();
  auto out = fetch(config, upstream.url("/fixed", "localhost"));
  EXPECT_EQ(out.error, "tls") << out.message;
  out = fetch(config, upstream.url("/fixed"));
  EXPECT_EQ(out.error, "tls") << out.message;
}

}  // namespace
}  // namespace gatherd::core::fetch
