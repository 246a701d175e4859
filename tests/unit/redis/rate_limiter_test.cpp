// Rate limits kept in Redis (libcore/rate_limit/redis): two limiters on two connections to one
// redis-server stand for two replicas sharing a host's schedule.
#include "libcore/rate_limit/redis/redis_rate_limiter.hpp"

#include <algorithm>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <memory>
#include <mutex>
#include <vector>

#include "libcore/backend_error.hpp"
#include "libcore/fetch/beast_http_client.hpp"
#include "libcore/fetch/fetcher.hpp"
#include "redis_test.hpp"

namespace gatherd::core::redis::test {
namespace {

using namespace std::chrono_literals;

// The most starts inside any window [t, t + window) that begins at a start.
std::size_t max_in_window(std::vector<steady_clock::time_point> starts, millis window) {
  std::sort(starts.begin(), starts.end());
  std::size_t best = 0;
  for (std::size_t i = 0, j = 0; i < starts.size(); ++i) {
    while (j < starts.size() && starts[j] < starts[i] + window) ++j;
    best = std::max(best, j - i);
  }
  return best;
}

TEST(RedisRateLimiter, TwoReplicasShareOneSchedule) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    connection a_conn(ex, options_for(server.url())), b_conn(ex, options_for(server.url()));
    co_await a_conn.wait_connected(5000ms);
    co_await b_conn.wait_connected(5000ms);
    redis_rate_limiter a(ex, a_conn), b(ex, b_conn);
    const rate limit{50, 5};  // 50/s after a burst of 5

    std::mutex m;
    std::vector<steady_clock::time_point> starts;
    const auto t0 = steady_clock::now();
    // 30 requests through each replica at once: 60 starts = 5 at once, then 55 at 50/s.
    auto request = [&](redis_rate_limiter& limiter) -> awaitable<void> {
      co_await limiter.acquire("upstream:80", limit);
      std::lock_guard lock(m);
      starts.push_back(steady_clock::now());
    };
    std::vector<std::future<void>> all;
    for (int i = 0; i < 30; ++i) {
      all.push_back(net::co_spawn(ex, request(a), net::use_future));
      all.push_back(net::co_spawn(ex, request(b), net::use_future));
    }
    co_await sleep_for(scaled(3000ms));
    for (auto& f : all) {
      require(f.wait_for(0s) == std::future_status::ready, "every request started");
      f.get();
    }
    const double elapsed = ms_since(t0);
    std::lock_guard lock(m);
    EXPECT_EQ(starts.size(), 60u);
    const double last = std::chrono::duration<double, std::milli>(
                            *std::max_element(starts.begin(), starts.end()) - t0).count();
    EXPECT_GE(last, 55 * 20.0 * 0.9);  // the two replicas together kept one rate, not two
    EXPECT_LE(elapsed, 3000.0 * time_scale() + 500);
    // Redis' clock decides; ours sees each start a little late, so allow one more per window.
    EXPECT_LE(max_in_window(starts, 500ms), 5u + 25u + 1u);
  });
}

TEST(RedisRateLimiter, UnderTheRateNobodyWaits) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    connection conn(ex, options_for(server.url()));
    co_await conn.wait_connected(5000ms);
    redis_rate_limiter limiter(ex, conn);
    for (int i = 0; i < 3; ++i) {
      EXPECT_LT((co_await limiter.acquire("h:1", rate{1000, 10})).count(), 50 * time_scale());
    }
    EXPECT_EQ(limiter.keys(), 0u);  // no line left waiting
    // The schedule is a key in Redis with an expiry (a second past its TAT).
    auto ttl = co_await conn.command("PTTL", "gatherd:rate:h:1");
    EXPECT_GT(ttl.as_integer(), 0);
    EXPECT_LE(ttl.as_integer(), 1100);
  });
}

TEST(RedisRateLimiter, RedisStoppedFailsTheLineWithBackendUnavailable) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    connection conn(ex, options_for(server.url(), 300ms));
    co_await conn.wait_connected(5000ms);
    redis_rate_limiter limiter(ex, conn);
    server.pause();
    const auto t0 = steady_clock::now();
    std::vector<std::future<millis>> waiting;
    for (int i = 0; i < 3; ++i) {
      waiting.push_back(net::co_spawn(ex, limiter.acquire("h:2", rate{10, 1}), net::use_future));
    }
    co_await sleep_for(scaled(1000ms));
    for (auto& f : waiting) {
      require(f.wait_for(0s) == std::future_status::ready, "answered, not stranded");
      EXPECT_THROW(f.get(), backend_unavailable);
    }
    EXPECT_LT(ms_since(t0), 1000.0 * time_scale() + 200);
    server.resume();
    require(co_await eventually([&] { return conn.connected(); }, 5000ms), "reconnected");
    co_await limiter.acquire("h:2", rate{10, 1});  // served again (throws if not)
  });
}

TEST(RedisRateLimiter, ACancelledWaiterLeavesTheLine) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    connection conn(ex, options_for(server.url()));
    co_await conn.wait_connected(5000ms);
    redis_rate_limiter limiter(ex, conn);
    const rate slow{0.5, 1};  // one start per 2 s
    co_await limiter.acquire("h:3", slow);  // takes the burst
    const auto first = steady_clock::now();
    net::cancellation_signal cancel;
    auto gone = net::co_spawn(ex, limiter.acquire("h:3", slow),
                              net::bind_cancellation_slot(cancel.slot(), net::use_future));
    co_await sleep_for(50ms);
    cancel.emit(net::cancellation_type::terminal);
    co_await sleep_for(scaled(100ms));
    require(gone.wait_for(0s) == std::future_status::ready, "the cancelled waiter answered");
    EXPECT_THROW(gone.get(), boost::system::system_error);
    // The next one still keeps the schedule: the cancelled one neither started nor made room.
    co_await limiter.acquire("h:3", slow);
    EXPECT_GE(ms_since(first), 1800.0);
  });
}

// What the fetcher makes of it: an attempt whose host's shared limit cannot be read is an error
// of its own, and nothing is sent (here nothing could answer: port 9, a private address).
TEST(RedisRateLimiter, AFetchWhoseSharedLimitIsUnavailableIsNotSent) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    connection conn(ex, options_for(server.url(), 300ms));
    co_await conn.wait_connected(5000ms);
    redis_rate_limiter limiter(ex, conn);
    auto client = fetch::make_beast_http_client(ex, fetch::http_client_config{});
    fetch::fetch_settings settings;
    settings.host_rate = rate{10, 1};
    std::vector<executor> io(1, ex);
    fetch::fetcher fetcher(*client, limiter, settings, io);
    server.pause();
    fetch::http_request request;
    request.url = "http://127.0.0.1:9/never";
    const auto out = co_await fetcher.attempt(request);
    server.resume();
    require(out.error.has_value(), "the attempt failed");
    EXPECT_EQ(out.error->type, "backend_unavailable");
    EXPECT_FALSE(out.response.has_value());
  });
}

}  // namespace
}  // namespace gatherd::core::redis::test
