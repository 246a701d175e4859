// What bounds the coordinator's memory: reads that create nothing, idle primitives forgotten
// after the idle time (never one with a holder, a waiter or an item, nor a set event), and the
// byte budgets of queues (per queue and server-wide), whose full puts wait like count-full ones.
#include <gtest/gtest.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include <string>

#include "libcore/payload_bytes.hpp"
#include "support/primitives_fixture.hpp"

namespace gatherd::core {
namespace {

using namespace std::chrono_literals;
using namespace test;
using namespace net::experimental::awaitable_operators;

constexpr millis idle_time{200};

std::size_t count(const coordinator& c, primitive_type t) {
  return c.stats().primitives[static_cast<std::size_t>(t)].load();
}
std::size_t total(const coordinator& c) {
  std::size_t n = 0;
  for (auto t : all_primitive_types) n += count(c, t);
  return n;
}
std::uint64_t expired(const coordinator& c, primitive_type t) {
  return c.stats().expired[static_cast<std::size_t>(t)].load();
}

// The error `op` fails with, whole (its code and retry_after).
template <class T>
awaitable<std::optional<primitive_error>> failure_of(awaitable<T> op) {
  try {
    co_await std::move(op);
  } catch (const primitive_error& e) {
    co_return e;
  }
  co_return std::nullopt;
}

// A string item of `bytes` payload bytes (its quotes included).
nlohmann::json item_of(std::size_t bytes) {
  return std::string(bytes - 2, 'x');
}

// ---- reads create nothing -------------------------------------------------------------------

TEST_F(PrimitivesTest, ReadsOfLocksAndEventsCreateNothing) {
  run([&]() -> awaitable<void> {
    for (int i = 0; i < 20; ++i) {  // more than the cap of 8
      const auto lock = co_await coord().get_semaphore("l" + std::to_string(i), true);
      EXPECT_EQ(lock.permits, 1u);
      EXPECT_EQ(lock.available, 1u);  // never used: a free lock
      EXPECT_TRUE(lock.holders.empty());
      EXPECT_FALSE(co_await coord().wait_event("e" + std::to_string(i), 0ms));
    }
    EXPECT_EQ(total(coord()), 0u);
    for (int i = 0; i < 8; ++i) co_await coord().put_semaphore("s" + std::to_string(i), 1);
  });
}

TEST_F(PrimitivesTest, AnEventMadeByAWaitIsForgottenWithItsLastWaiter) {
  run([&]() -> awaitable<void> {
    auto waiter = [&]() -> awaitable<void> {
      EXPECT_FALSE(co_await coord().wait_event("e", 60ms));
    };
    auto peek = [&]() -> awaitable<void> {
      co_await sleep_for(20ms);
      EXPECT_EQ(count(coord(), primitive_type::event), 1u);  // it holds the waiters
    };
    co_await (waiter() && waiter() && peek());
    EXPECT_EQ(count(coord(), primitive_type::event), 0u);
    EXPECT_EQ(expired(coord(), primitive_type::event), 0u);  // not idle-expired: it never was
    // A write keeps it: waited on, then PUT, it outlives its waiter.
    auto writer = [&]() -> awaitable<void> {
      co_await sleep_for(20ms);
      co_await coord().put_event("e");
    };
    co_await (waiter() && writer());
    EXPECT_EQ(count(coord(), primitive_type::event), 1u);
  });
}

// ---- idle expiry ----------------------------------------------------------------------------

class IdlePrimitivesTest : public PrimitivesTest {
 protected:
  IdlePrimitivesTest() : PrimitivesTest(idle_config()) {}
  static coordinator_config idle_config() {
    coordinator_config c = config();
    c.idle_timeout = idle_time;
    return c;
  }
};

TEST_F(IdlePrimitivesTest, IdlePrimitivesOfEveryTypeAreForgotten) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 2);
    auto p = co_await coord().acquire("l", true, holder("a"), 0ms);
    co_await coord().release("l", true, p.id);
    co_await coord().put_event("e");
    co_await coord().put_barrier("b", 2);
    co_await coord().put_queue("q", 10);
    EXPECT_EQ(total(coord()), 5u);
    co_await sleep_for(idle_time * 4);
    EXPECT_EQ(total(coord()), 0u);
    for (auto t : all_primitive_types) EXPECT_EQ(expired(coord(), t), 1u) << to_string(t);
    EXPECT_EQ(co_await error_of(coord().get_semaphore("s", false)), primitive_errc::not_found);
    EXPECT_EQ(co_await error_of(coord().get_queue("q")), primitive_errc::not_found);
    EXPECT_EQ(co_await error_of(coord().get_barrier("b")), primitive_errc::not_found);
    // The names are free again, and fencing tokens keep increasing across the reclaim.
    auto again = co_await coord().acquire("l", true, holder("a"), 0ms);
    EXPECT_GT(again.fencing_token, p.fencing_token);
  });
}

TEST_F(IdlePrimitivesTest, NothingInUseIsForgotten) {
  run([&]() -> awaitable<void> {
    auto held = co_await coord().acquire("held", true, holder("a", 10000ms), 0ms);
    co_await coord().put_queue("items", 10);
    co_await coord().put_items("items", items(1), 0ms);
    co_await coord().put_queue("leased", 10);
    co_await coord().put_items("leased", items(2), 0ms);
    auto got = co_await coord().get_items("leased", 1, 0ms, 10000ms);
    co_await coord().set_event("set", true);  // a fact later waiters rely on: kept
    co_await coord().put_semaphore("full", 1);
    co_await coord().acquire("full", false, holder("a", 10000ms), 0ms);
    co_await coord().put_barrier("b", 2);
    auto parked = [&]() -> awaitable<void> {  // waiters of a full semaphore and a barrier
      EXPECT_EQ(co_await error_of(coord().acquire("full", false, holder("b"), idle_time * 5)),
                primitive_errc::acquire_timeout);
    };
    auto arriving = [&]() -> awaitable<void> {
      EXPECT_EQ(co_await error_of(coord().wait_barrier("b", idle_time * 5)),
                primitive_errc::wait_timeout);
    };
    auto check = [&]() -> awaitable<void> {
      co_await sleep_for(idle_time * 4);
      EXPECT_EQ(total(coord()), 6u);
      for (auto t : all_primitive_types) EXPECT_EQ(expired(coord(), t), 0u) << to_string(t);
    };
    co_await (parked() && arriving() && check());
    EXPECT_TRUE(co_await coord().wait_event("set", 0ms));
    EXPECT_EQ((co_await coord().get_semaphore("held", true)).holders.at(0).id, held.id);
    EXPECT_EQ((co_await coord().get_queue("items")).size, 1u);
    EXPECT_EQ((co_await coord().get_queue("leased")).leased, 1u);
    // Released, done and left alone, they go.
    co_await coord().release("held", true, held.id);
    co_await coord().done_items("leased", strings(got.at(0).receipt));
    co_await sleep_for(idle_time * 4);
    EXPECT_EQ(count(coord(), primitive_type::lock), 0u);
    EXPECT_EQ(count(coord(), primitive_type::queue), 1u);  // "items" still holds its item
    EXPECT_EQ(count(coord(), primitive_type::event), 1u);
  });
}

TEST_F(IdlePrimitivesTest, EveryCallRestartsTheIdleClock) {
  run([&]() -> awaitable<void> {
    co_await coord().put_semaphore("s", 1);
    for (int i = 0; i < 12; ++i) {  // 3 idle times in all, never one without a read
      co_await sleep_for(idle_time / 4);
      co_await coord().get_semaphore("s", false);
    }
    EXPECT_EQ(count(coord(), primitive_type::semaphore), 1u);
    co_await sleep_for(idle_time * 4);
    EXPECT_EQ(count(coord(), primitive_type::semaphore), 0u);
  });
}

TEST_F(IdlePrimitivesTest, ALeaseThatEndsMakesItsLockIdle) {
  run([&]() -> awaitable<void> {
    co_await coord().acquire("l", true, holder("crashed", 50ms), 0ms);  // never released
    co_await sleep_for(idle_time * 3);
    EXPECT_EQ(count(coord(), primitive_type::lock), 0u);
    EXPECT_EQ(expired(coord(), primitive_type::lock), 1u);
  });
}

TEST_F(IdlePrimitivesTest, TheCapSaysWhenTheFirstIdleOneGoes) {
  run([&]() -> awaitable<void> {
    for (int i = 0; i < 8; ++i) co_await coord().put_semaphore("s" + std::to_string(i), 1);
    auto refused = co_await failure_of(coord().put_queue("q", 1));
    require(refused.has_value(), "the 9th primitive is refused");
    EXPECT_EQ(refused->code(), primitive_errc::too_many_primitives);
    require(refused->retry_after().has_value(), "a retry_after");
    EXPECT_GE(*refused->retry_after(), 1ms);
    EXPECT_LE(*refused->retry_after(), idle_time);
    co_await sleep_for(*refused->retry_after() + 20ms);
    co_await coord().put_queue("q", 1);  // room, without a delete
  });
}

TEST_F(PrimitivesTest, TheCapHasNoRetryAfterWhenNothingIsIdle) {
  run([&]() -> awaitable<void> {
    for (int i = 0; i < 8; ++i)
      co_await coord().acquire("l" + std::to_string(i), true, holder("a"), 0ms);
    auto refused = co_await failure_of(coord().put_queue("q", 1));
    require(refused.has_value(), "the 9th primitive is refused");
    EXPECT_FALSE(refused->retry_after().has_value());
  });
}

TEST_F(PrimitivesTest, ZeroIdleTimeNeverForgets) {
  coordinator_config c = config();
  c.idle_timeout = 0ms;
  coordinator never(io_.get_executor(), c);
  never.start();
  auto body = [&]() -> awaitable<void> {
    co_await never.put_semaphore("s", 1);
    co_await sleep_for(200ms);
    EXPECT_EQ(count(never, primitive_type::semaphore), 1u);
    co_await never.shutdown();
  };
  run(body);
}

// ---- queue bytes ----------------------------------------------------------------------------

TEST(PayloadBytes, AreTheCompactJsonTextWithRawStrings) {
  EXPECT_EQ(payload_bytes(nlohmann::json("abc")), 5u);
  EXPECT_EQ(payload_bytes(nlohmann::json(12345)), 5u);
  EXPECT_EQ(payload_bytes(nlohmann::json(-1.5)), 4u);
  EXPECT_EQ(payload_bytes(nlohmann::json(nullptr)), 4u);
  const auto doc = nlohmann::json::parse(R"({"a":[1,true,"x\ny"],"bc":{}})");
  EXPECT_EQ(payload_bytes(doc), doc.dump().size() - 1);  // "\n" is one byte held, two on the wire
}

TEST_F(PrimitivesTest, QueueBytesAreHeldUntilDone) {
  run([&]() -> awaitable<void> {
    co_await coord().put_queue("q", 100, 1000);
    co_await coord().put_items("q", items("abc", 12345), 0ms);
    auto info = co_await coord().get_queue("q");
    EXPECT_EQ(info.bytes, 10u);
    EXPECT_EQ(info.max_bytes, 1000u);
    EXPECT_EQ(coord().stats().queue_bytes.used.load(), 10u);
    auto got = co_await coord().get_items("q", 1, 0ms, 30000ms);
    EXPECT_EQ((co_await coord().get_queue("q")).bytes, 10u);  // a leased item is still held
    co_await coord().done_items("q", strings(got.at(0).receipt));
    EXPECT_EQ((co_await coord().get_queue("q")).bytes, 5u);
    co_await coord().remove_queue("q");
    EXPECT_EQ(coord().stats().queue_bytes.used.load(), 0u);
  });
}

TEST_F(PrimitivesTest, APutLargerThanItsQueueCanHoldIsTooLarge) {
  run([&]() -> awaitable<void> {
    co_await coord().put_queue("q", 100, 100);
    EXPECT_EQ(co_await error_of(coord().put_items("q", items(item_of(60), item_of(50)), 5000ms)),
              primitive_errc::item_too_large);  // at once: waiting could never help
    co_await coord().put_items("q", items(item_of(100)), 0ms);
    EXPECT_EQ((co_await coord().get_queue("q")).bytes, 100u);
  });
}

TEST_F(PrimitivesTest, AByteFullPutWaitsForDoneLikeACountFullOne) {
  run([&]() -> awaitable<void> {
    co_await coord().put_queue("q", 100, 100);
    co_await coord().put_items("q", items(item_of(80)), 0ms);
    EXPECT_EQ(co_await error_of(coord().put_items("q", items(item_of(30)), 50ms)),
              primitive_errc::queue_bytes_full);
    EXPECT_EQ((co_await coord().get_queue("q")).size, 1u);  // nothing of the refused put
    const auto t0 = steady_clock::now();
    double put_at = 0;
    auto putter = [&]() -> awaitable<void> {
      co_await coord().put_items("q", items(item_of(30)), 3000ms);
      put_at = ms_since(t0);
    };
    auto worker = [&]() -> awaitable<void> {
      co_await sleep_for(50ms);
      auto got = co_await coord().get_items("q", 1, 0ms, 30000ms);  // leased: still held
      co_await sleep_for(100ms);
      co_await coord().done_items("q", strings(got.at(0).receipt));
    };
    co_await (putter() && worker());
    EXPECT_GE(put_at, 140.0);  // after the done, not after the get
    EXPECT_EQ((co_await coord().get_queue("q")).bytes, 30u);
  });
}

TEST(QueueBudget, IsSharedByEveryQueue) {
  net::io_context io;
  coordinator_config c;
  c.queues_max_bytes = 100;
  coordinator coord(io.get_executor(), c);
  coord.start();
  auto body = [&]() -> awaitable<void> {
    co_await coord.put_queue("a", 100);
    co_await coord.put_queue("b", 100);
    co_await coord.put_items("a", items(item_of(70)), 0ms);
    EXPECT_EQ(co_await error_of(coord.put_items("b", items(item_of(40)), 30ms)),
              primitive_errc::queues_memory_full);
    EXPECT_EQ(co_await error_of(coord.put_items("b", items(item_of(101)), 0ms)),
              primitive_errc::item_too_large);
    // Room made in another queue wakes the waiting put.
    auto freer = [&]() -> awaitable<void> {
      co_await sleep_for(50ms);
      auto got = co_await coord.get_items("a", 1, 0ms, 30000ms);
      co_await coord.done_items("a", strings(got.at(0).receipt));
    };
    co_await (coord.put_items("b", items(item_of(40)), 3000ms) && freer());
    EXPECT_EQ(coord.stats().queue_bytes.used.load(), 40u);
    // So does deleting a queue.
    co_await coord.put_items("a", items(item_of(60)), 0ms);
    auto deleter = [&]() -> awaitable<void> {
      co_await sleep_for(50ms);
      co_await coord.remove_queue("b");
    };
    co_await (coord.put_items("a", items(item_of(30)), 3000ms) && deleter());
    EXPECT_EQ(coord.stats().queue_bytes.used.load(), 90u);
    co_await coord.shutdown();
  };
  auto done = net::co_spawn(io, body(), net::use_future);
  io.run();
  done.get();
}

}  // namespace
}  // namespace gatherd::core
