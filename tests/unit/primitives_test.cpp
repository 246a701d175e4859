// The coordination primitives (libcore/primitives): semaphores with leases and fencing tokens,
// reentrant locks, events, barriers and leased queues, driven through the coordinator with
// durations of tens of milliseconds. Assertions are on order, counts and states; timing bounds
// are generous.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "support/primitives_fixture.hpp"

namespace gatherd::core {
namespace {

using namespace std::chrono_literals;

using namespace test;

// ---- semaphores -----------------------------------------------------------------------------

TEST_F(PrimitivesTest, SemaphoreOfTwoRunsFiveHoldersInThreeWaves) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("pool", 2);
    const auto t0 = steady_clock::now();
    std::mutex m;
    std::vector<double> acquired;
    int holding = 0, most = 0;
    std::vector<std::uint64_t> tokens;
    auto worker = [&](int i) -> awaitable<void> {
      auto p = co_await coord().acquire("pool", false, holder("w" + std::to_string(i)), 5000ms);
      {
        std::lock_guard lock(m);
        acquired.push_back(ms_since(t0));
        tokens.push_back(p.fencing_token);
        most = std::max(most, ++holding);
      }
      co_await sleep_for(150ms);
      {
        std::lock_guard lock(m);
        --holding;
      }
      co_await coord().release("pool", false, p.id);
    };
    using namespace net::experimental::awaitable_operators;
    co_await (worker(0) && worker(1) && worker(2) && worker(3) && worker(4));
    const double total = ms_since(t0);
    EXPECT_EQ(most, 2);
    require(acquired.size() == 5, "acquired.size() == 5");
    std::sort(acquired.begin(), acquired.end());
    EXPECT_LT(acquired[1], 100.0);  // wave 1 at once
    EXPECT_GE(acquired[2], 140.0);  // wave 2 after the first release
    EXPECT_LT(acquired[3], 290.0);
    EXPECT_GE(acquired[4], 290.0);  // wave 3
    EXPECT_GE(total, 440.0);
    EXPECT_LT(total, 1500.0);
    std::sort(tokens.begin(), tokens.end());
    EXPECT_EQ(std::adjacent_find(tokens.begin(), tokens.end()), tokens.end());  // all distinct
  });
}

TEST_F(PrimitivesTest, WaitersAreServedFifoWithIncreasingFencingTokens) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    auto first = co_await coord().acquire("s", false, holder("a"), 1000ms);
    std::vector<std::string> order;
    std::vector<std::uint64_t> tokens{first.fencing_token};
    auto waiter = [&](std::string name, millis delay) -> awaitable<void> {
      co_await sleep_for(delay);
      auto p = co_await coord().acquire("s", false, holder(name), 3000ms);
      order.push_back(name);
      tokens.push_back(p.fencing_token);
      co_await sleep_for(10ms);
      co_await coord().release("s", false, p.id);
    };
    auto releaser = [&]() -> awaitable<void> {
      co_await sleep_for(120ms);
      co_await coord().release("s", false, first.id);
    };
    using namespace net::experimental::awaitable_operators;
    co_await (waiter("b", 10ms) && waiter("c", 40ms) && waiter("d", 70ms) && releaser());
    EXPECT_EQ(order, strings("b", "c", "d"));
    EXPECT_TRUE(std::is_sorted(tokens.begin(), tokens.end()));
    EXPECT_EQ(std::adjacent_find(tokens.begin(), tokens.end()), tokens.end());
  });
}

TEST_F(PrimitivesTest, ReleaseOfAnUnknownOrAlreadyReleasedPermitIsNotHeld) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    auto p = co_await coord().acquire("s", false, holder("a"), 0ms);
    co_await coord().release("s", false, p.id);
    EXPECT_EQ(co_await error_of(coord().release("s", false, p.id)), primitive_errc::not_held);
    EXPECT_EQ(co_await error_of(coord().release("s", false, "nope")), primitive_errc::not_held);
    auto info = co_await coord().get_semaphore("s", false);
    EXPECT_EQ(info.available, 1u);  // over-release never adds a permit (BoundedSemaphore)
  });
}

TEST_F(PrimitivesTest, AcquireTimesOutAndLeavesNoWaiter) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    co_await coord().acquire("s", false, holder("a"), 0ms);
    const auto t0 = steady_clock::now();
    EXPECT_EQ(co_await error_of(coord().acquire("s", false, holder("b"), 80ms)),
              primitive_errc::acquire_timeout);
    EXPECT_GE(ms_since(t0), 70.0);
    EXPECT_EQ((co_await coord().get_semaphore("s", false)).waiters, 0u);
    EXPECT_EQ(coord().stats().waiters.load(), 0u);
  });
}

TEST_F(PrimitivesTest, AnExpiredLeaseFreesItsPermitForTheNextWaiter) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    const auto t0 = steady_clock::now();  // before: the return hop may be slow (TSan)
    auto crashed = co_await coord().acquire("s", false, holder("a", 60ms), 0ms);
    auto next = co_await coord().acquire("s", false, holder("b"), 2000ms);
    EXPECT_GE(ms_since(t0), 40.0);
    EXPECT_LT(ms_since(t0), 1000.0);
    EXPECT_GT(next.fencing_token, crashed.fencing_token);
    EXPECT_EQ(co_await error_of(coord().release("s", false, crashed.id)), primitive_errc::not_held);
    EXPECT_GE(coord().stats().lease_expiries.load(), 1u);
  });
}

TEST_F(PrimitivesTest, KeepaliveExtendsALease) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    // Margins of 100 ms and more: a hop onto the strand can take tens of ms under TSan.
    auto p = co_await coord().acquire("s", false, holder("a", 150ms), 0ms);
    co_await sleep_for(50ms);
    co_await coord().keepalive("s", false, p.id, 600ms);
    co_await sleep_for(150ms);  // past the first deadline
    EXPECT_EQ((co_await coord().get_semaphore("s", false)).available, 0u);
    co_await coord().release("s", false, p.id);  // still held
    EXPECT_EQ(co_await error_of(coord().keepalive("s", false, p.id, 100ms)),
              primitive_errc::not_held);
  });
}

TEST_F(PrimitivesTest, TheWaiterCapRefusesTheNextWaiter) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    auto p = co_await coord().acquire("s", false, holder("a"), 0ms);
    auto waiter = [&](int i) -> awaitable<void> {
      auto q = co_await coord().acquire("s", false, holder("w" + std::to_string(i)), 2000ms);
      co_await coord().release("s", false, q.id);
    };
    const auto ex = co_await net::this_coro::executor;
    for (int i = 0; i < 4; ++i) net::co_spawn(ex, waiter(i), net::detached);
    co_await sleep_for(50ms);
    EXPECT_EQ(co_await error_of(coord().acquire("s", false, holder("x"), 1000ms)),
              primitive_errc::too_many_waiters);
    co_await coord().release("s", false, p.id);
    co_await sleep_for(50ms);
    EXPECT_EQ((co_await coord().get_semaphore("s", false)).available, 1u);
  });
}

TEST_F(PrimitivesTest, ACancelledAcquireLeavesNoWaiterAndGetsNoPermit) {
  using namespace net::experimental::awaitable_operators;
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    auto p = co_await coord().acquire("s", false, holder("a"), 0ms);
    // The caller gives up after 30 ms (its client disconnected).
    co_await (coord().acquire("s", false, holder("gone"), 5000ms) || sleep_for(30ms));
    co_await sleep_for(20ms);
    EXPECT_EQ((co_await coord().get_semaphore("s", false)).waiters, 0u);
    co_await coord().release("s", false, p.id);
    EXPECT_EQ((co_await coord().get_semaphore("s", false)).available, 1u);
  });
}

TEST_F(PrimitivesTest, AnUnknownSemaphoreIsNotFoundButALockExistsOnFirstUse) {
  run([&]() -> awaitable<void> {
    EXPECT_EQ(co_await error_of(coord().acquire("nope", false, holder("a"), 0ms)),
              primitive_errc::not_found);
    auto p = co_await coord().acquire("door", true, holder("a"), 0ms);
    EXPECT_EQ(p.count, 1u);
    auto info = co_await coord().get_semaphore("door", true);
    EXPECT_EQ(info.permits, 1u);
    EXPECT_EQ(info.available, 0u);
  });
}

TEST_F(PrimitivesTest, AReentrantLockCountsAcquisitionsAndNeedsAsManyReleases) {
  run([&]() -> awaitable<void> {
    auto first = co_await coord().acquire("door", true, holder("a", 30000ms, true), 0ms);
    auto again = co_await coord().acquire("door", true, holder("a", 30000ms, true), 0ms);
    EXPECT_EQ(again.id, first.id);
    EXPECT_EQ(again.count, 2u);
    EXPECT_EQ(again.fencing_token, first.fencing_token);
    // Another holder (or "a" without reentrant) must wait.
    EXPECT_EQ(co_await error_of(coord().acquire("door", true, holder("b"), 0ms)),
              primitive_errc::acquire_timeout);
    EXPECT_EQ(co_await error_of(coord().acquire("door", true, holder("a"), 0ms)),
              primitive_errc::acquire_timeout);
    co_await coord().release("door", true, first.id);
    EXPECT_EQ((co_await coord().get_semaphore("door", true)).available, 0u);
    co_await coord().release("door", true, first.id);
    EXPECT_EQ((co_await coord().get_semaphore("door", true)).available, 1u);
  });
}

// ---- events ---------------------------------------------------------------------------------

TEST_F(PrimitivesTest, SettingAnEventWakesThreeWaitersTogether) {
  run([&]() -> awaitable<void> {
    const auto t0 = steady_clock::now();
    std::vector<double> woke;
    std::mutex m;
    auto waiter = [&]() -> awaitable<void> {
      const bool set = co_await coord().wait_event("go", 3000ms);
      EXPECT_TRUE(set);
      std::lock_guard lock(m);
      woke.push_back(ms_since(t0));
    };
    auto setter = [&]() -> awaitable<void> {
      co_await sleep_for(100ms);
      co_await coord().set_event("go", true);
    };
    using namespace net::experimental::awaitable_operators;
    co_await (waiter() && waiter() && waiter() && setter());
    require(woke.size() == 3, "woke.size() == 3");
    for (double t : woke) {
      EXPECT_GE(t, 90.0);
      EXPECT_LT(t, 1000.0);
    }
    EXPECT_LT(
        *std::max_element(woke.begin(), woke.end()) - *std::min_element(woke.begin(), woke.end()),
        50.0);
    EXPECT_TRUE(co_await coord().wait_event("go", 0ms));  // stays set
  });
}

TEST_F(PrimitivesTest, AnEventWaitTimesOutFalseAndClearResets) {
  run([&]() -> awaitable<void> {
    const auto t0 = steady_clock::now();
    EXPECT_FALSE(co_await coord().wait_event("e", 60ms));
    EXPECT_GE(ms_since(t0), 50.0);
    co_await coord().set_event("e", true);
    EXPECT_TRUE(co_await coord().wait_event("e", 10ms));
    co_await coord().remove_event("e");
    EXPECT_FALSE(co_await coord().wait_event("e", 0ms));  // a new, clear event
  });
}

// ---- barriers -------------------------------------------------------------------------------

TEST_F(PrimitivesTest, ABarrierOfThreeReleasesAllAtTheLastArrival) {
  run([&]() -> awaitable<void> {
    co_await coord().put_barrier("b", 3);
    const auto t0 = steady_clock::now();
    std::vector<std::pair<double, barrier_pass>> passes;
    std::mutex m;
    auto party = [&](millis delay) -> awaitable<void> {
      co_await sleep_for(delay);
      auto pass = co_await coord().wait_barrier("b", 3000ms);
      std::lock_guard lock(m);
      passes.emplace_back(ms_since(t0), pass);
    };
    using namespace net::experimental::awaitable_operators;
    co_await (party(0ms) && party(50ms) && party(120ms));
    require(passes.size() == 3, "passes.size() == 3");
    std::set<std::size_t> arrivals;
    for (const auto& [t, pass] : passes) {
      EXPECT_GE(t, 110.0);  // nobody passes before the third arrives
      EXPECT_EQ(pass.generation, 0u);
      arrivals.insert(pass.arrival);
    }
    EXPECT_EQ(arrivals.size(), 3u);
    EXPECT_EQ(*arrivals.rbegin(), 2u);
    EXPECT_EQ((co_await coord().get_barrier("b")).generation, 1u);
  });
}

TEST_F(PrimitivesTest, ABarrierWaiterThatTimesOutLeavesWithoutBreakingTheOthers) {
  run([&]() -> awaitable<void> {
    co_await coord().put_barrier("b", 2);
    EXPECT_EQ(co_await error_of(coord().wait_barrier("b", 40ms)), primitive_errc::wait_timeout);
    EXPECT_EQ((co_await coord().get_barrier("b")).waiting, 0u);
    auto party = [&]() -> awaitable<barrier_pass> {
      co_return co_await coord().wait_barrier("b", 2000ms);
    };
    using namespace net::experimental::awaitable_operators;
    auto [a, b] = co_await (party() && party());
    EXPECT_EQ(a.generation, 0u);
    EXPECT_EQ(b.generation, 0u);
    EXPECT_NE(a.arrival, b.arrival);
  });
}

// ---- queues ---------------------------------------------------------------------------------

TEST_F(PrimitivesTest, ABoundedPutWaitsForRoomAndIsAllOrNothing) {
  run([&]() -> awaitable<void> {
    co_await coord().put_queue("q", 2);
    co_await coord().put_items("q", items(1, 2), 0ms);
    EXPECT_EQ(co_await error_of(coord().put_items("q", items(3), 50ms)),
              primitive_errc::queue_full);
    EXPECT_EQ((co_await coord().get_queue("q")).size, 2u);  // nothing of the failed put
    auto getter = [&]() -> awaitable<void> {
      co_await sleep_for(60ms);
      auto got = co_await coord().get_items("q", 1, 0ms, 30000ms);
      EXPECT_EQ(got.size(), 1u);
    };
    const auto t0 = steady_clock::now();
    using namespace net::experimental::awaitable_operators;
    co_await (coord().put_items("q", items(3), 2000ms) && getter());
    EXPECT_GE(ms_since(t0), 50.0);
    auto info = co_await coord().get_queue("q");
    EXPECT_EQ(info.size, 2u);
    EXPECT_EQ(info.leased, 1u);  // leased items do not count toward maxsize
    EXPECT_EQ(info.unfinished, 3u);
  });
}

TEST_F(PrimitivesTest, AnUnacknowledgedItemIsRedeliveredAfterItsLease) {
  run([&]() -> awaitable<void> {
    co_await coord().put_queue("q", 10);
    co_await coord().put_items("q", items(7, 8), 0ms);
    auto first = co_await coord().get_items("q", 1, 0ms, 60ms);
    require(first.size() == 1, "first.size() == 1");
    EXPECT_EQ(first[0].value, 7);
    co_await sleep_for(120ms);  // the worker died: no done
    auto again = co_await coord().get_items("q", 2, 0ms, 30000ms);
    require(again.size() == 2, "again.size() == 2");
    EXPECT_EQ(again[0].value, 7);  // redelivered first
    EXPECT_EQ(again[1].value, 8);
    EXPECT_NE(again[0].receipt, first[0].receipt);
    auto unknown = co_await coord().done_items("q", strings(first[0].receipt, again[0].receipt));
    EXPECT_EQ(unknown, strings(first[0].receipt));  // its lease had ended
    EXPECT_GE(coord().stats().lease_expiries.load(), 1u);
  });
}

TEST_F(PrimitivesTest, AGetWaitsForAPutAndTimesOutEmpty) {
  run([&]() -> awaitable<void> {
    co_await coord().put_queue("q", 10);
    auto empty = co_await coord().get_items("q", 1, 50ms, 1000ms);
    EXPECT_TRUE(empty.empty());
    auto putter = [&]() -> awaitable<void> {
      co_await sleep_for(50ms);
      co_await coord().put_items("q", items(5), 0ms);
    };
    using namespace net::experimental::awaitable_operators;
    auto got = co_await (coord().get_items("q", 3, 2000ms, 1000ms) && putter());
    require(got.size() == 1, "got.size() == 1");
    EXPECT_EQ(got[0].value, 5);
  });
}

TEST_F(PrimitivesTest, JoinReturnsOnceEveryPutItemIsDone) {
  run([&]() -> awaitable<void> {
    co_await coord().put_queue("q", 10);
    co_await coord().put_items("q", items(1, 2, 3), 0ms);
    EXPECT_EQ(co_await coord().join_queue("q", 30ms), 3u);  // timeout: still 3 unfinished
    auto worker = [&]() -> awaitable<void> {
      for (int i = 0; i < 3; ++i) {
        auto got = co_await coord().get_items("q", 1, 1000ms, 5000ms);
        co_await sleep_for(20ms);
        co_await coord().done_items("q", strings(got.at(0).receipt));
      }
    };
    using namespace net::experimental::awaitable_operators;
    auto unfinished = co_await (coord().join_queue("q", 3000ms) && worker());
    EXPECT_EQ(unfinished, 0u);
    EXPECT_EQ(coord().stats().queued_items.load(), 0u);
  });
}

// ---- names and caps -------------------------------------------------------------------------

TEST_F(PrimitivesTest, TheServerWideCapRefusesANewPrimitive) {
  run([&]() -> awaitable<void> {
    for (int i = 0; i < 8; ++i) co_await coord().put_semaphore("s" + std::to_string(i), 1);
    EXPECT_EQ(co_await error_of(coord().put_queue("q", 1)), primitive_errc::too_many_primitives);
    co_await coord().remove_semaphore("s0", false);
    co_await coord().put_queue("q", 1);
    EXPECT_EQ(coord().stats().primitives[0].load(), 7u);
  });
}

TEST(PrimitiveNames, FollowTheContract) {
  EXPECT_TRUE(valid_primitive_name("a"));
  EXPECT_TRUE(valid_primitive_name("jobs.v2_lock-1"));
  EXPECT_TRUE(valid_primitive_name(std::string(128, 'x')));
  EXPECT_FALSE(valid_primitive_name(""));
  EXPECT_FALSE(valid_primitive_name(std::string(129, 'x')));
  EXPECT_FALSE(valid_primitive_name("a/b"));
  EXPECT_FALSE(valid_primitive_name("a b"));
}

}  // namespace
}  // namespace gatherd::core
