// The rate limiter: GCRA arithmetic, FIFO throttling with one timer per key, cancellation that
// gives back nothing it did not take, independent keys, and forgetting idle keys.
#include "libcore/rate_limit/throttle.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>
#include <vector>

namespace gatherd::core {
namespace {

using namespace std::chrono_literals;

double ms_between(steady_clock::time_point a, steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

TEST(Gcra, BurstThenOneEveryInterval) {
  gcra g(rate{10, 3});  // 100 ms interval, 3 at once
  const auto t0 = steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(g.conforms(t0)) << i;
    g.start_now(t0);
  }
  EXPECT_FALSE(g.conforms(t0));
  EXPECT_NEAR(ms_between(t0, g.next_start()), 100, 0.01);
  EXPECT_FALSE(g.conforms(t0 + 99ms));
  EXPECT_TRUE(g.conforms(t0 + 100ms));
}

TEST(Gcra, QueuedStartsKeepTheScheduleButCatchUpAtMost25Ms) {
  gcra g(rate{100, 1});  // 10 ms
  const auto t0 = steady_clock::now();
  g.start_now(t0);  // next at t0 + 10
  g.start_queued(t0 + 22ms);  // woke 12 ms late: the slot after is still t0 + 20, due at once
  EXPECT_NEAR(ms_between(t0, g.next_start()), 20, 0.01);
  g.start_queued(t0 + 500ms);  // a long stall: 25 ms are made up (3 slots), not 48
  EXPECT_NEAR(ms_between(t0, g.next_start()), 485, 0.01);
  EXPECT_FALSE(g.idle(t0 + 484ms));
  EXPECT_TRUE(g.idle(t0 + 485ms));
}

class ThrottleTest : public ::testing::Test {
 protected:
  // Runs `body` on the io_context until everything it started is done.
  template <class F>
  void run(F body) {
    std::exception_ptr error;
    net::co_spawn(io, body(), [&](std::exception_ptr e) { error = e; });
    io.run();
    if (error) std::rethrow_exception(error);
  }

  net::io_context io;
  throttle limiter{io.get_executor()};
};

TEST_F(ThrottleTest, WaitersGoInFifoOrderOnePerInterval) {
  std::vector<int> order;
  std::vector<steady_clock::time_point> at;
  const auto t0 = steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    net::co_spawn(
        io,
        [&, i]() -> awaitable<void> {
          co_await limiter.acquire("host:80", rate{50, 1});  // 20 ms apart
          order.push_back(i);
          at.push_back(steady_clock::now());
        },
        net::detached);
  }
  io.run();
  ASSERT_EQ(order.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(order[i], i);
  EXPECT_LT(ms_between(t0, at[0]), 10);  // the first goes at once
  for (std::size_t i = 1; i < at.size(); ++i) {
    EXPECT_GE(ms_between(t0, at[i]), 20.0 * static_cast<double>(i) - 0.5) << i;  // never early
  }
  EXPECT_LT(ms_between(t0, at.back()), 180 + 60);  // and the schedule does not drift away
}

TEST_F(ThrottleTest, KeysAreIndependentAndTheWaitIsReported) {
  millis waited_a{-1}, waited_b{-1};
  run([&]() -> awaitable<void> {
    co_await limiter.acquire("a", rate{2, 1});
    co_await limiter.acquire("b", rate{2, 1});  // another key: no wait
    waited_b = co_await limiter.acquire("b:other", rate{2, 1});
    waited_a = co_await limiter.acquire("a", rate{2, 1});  // 500 ms after the first
  });
  EXPECT_EQ(waited_b.count(), 0);
  EXPECT_GE(waited_a.count(), 480);
  EXPECT_LT(waited_a.count(), 700);
  EXPECT_EQ(limiter.keys(), 3u);
}

TEST_F(ThrottleTest, ACancelledWaiterTakesNoSlot) {
  net::cancellation_signal cancel;
  bool cancelled = false;
  steady_clock::time_point third;
  const auto t0 = steady_clock::now();
  run([&]() -> awaitable<void> {
    co_await limiter.acquire("k", rate{10, 1});  // now; the next slot is at 100 ms
    net::co_spawn(io, limiter.acquire("k", rate{10, 1}),
                  net::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, millis) {
                    try {
                      if (e) std::rethrow_exception(e);
                    } catch (const boost::system::system_error& err) {
                      cancelled = err.code() == net::error::operation_aborted;
                    }
                  }));
    net::steady_timer t(io, 20ms);
    co_await t.async_wait(net::use_awaitable);
    cancel.emit(net::cancellation_type::terminal);
    co_await limiter.acquire("k", rate{10, 1});  // gets the slot the cancelled one left
    third = steady_clock::now();
  });
  EXPECT_TRUE(cancelled);
  EXPECT_GE(ms_between(t0, third), 99);
  EXPECT_LT(ms_between(t0, third), 180);  // not 200: the cancelled waiter took nothing
}

TEST_F(ThrottleTest, IdleKeysAreForgotten) {
  run([&]() -> awaitable<void> {
    for (int i = 0; i < 3000; ++i) {
      co_await limiter.acquire("host-" + std::to_string(i), rate{1000, 1});
    }
  });
  // 1 ms intervals: by the time a thousand more keys came, the old ones were idle.
  EXPECT_LT(limiter.keys(), 2100u);
}

}  // namespace
}  // namespace gatherd::core
