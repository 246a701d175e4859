// Semaphores and locks kept in Redis (libcore/primitives/redis), against a real redis-server:
// the behaviours the coordinator's tests check for the memory backend, and what only several
// replicas can show, with two instances of redis_semaphores on connections of their own to one
// Redis (as two gatherd processes would): FIFO across them, a bound that holds, fencing tokens
// that keep increasing, leases handed over, prompt and lost wake-ups, a stalled Redis.
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <mutex>
#include <set>
#include <vector>

#include "libcore/backend_error.hpp"
#include "libcore/primitives/primitive_error.hpp"
#include "libcore/primitives/redis/redis_semaphores.hpp"
#include "redis_test.hpp"

namespace gatherd::core::redis::test {
namespace {

using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;

acquire_request holder(std::string name, millis ttl = 30000ms, bool reentrant = false) {
  acquire_request r;
  r.holder = std::move(name);
  r.ttl = ttl;
  r.reentrant = reentrant;
  return r;
}

template <class T>
awaitable<std::optional<primitive_errc>> refusal_of(awaitable<T> op) {
  return core::test::error_code_of<primitive_error>(std::move(op));
}

template <class T>
awaitable<bool> backend_failed(awaitable<T> op) {
  try {
    co_await std::move(op);
  } catch (const backend_unavailable&) {
    co_return true;
  }
  co_return false;
}

redis_semaphores_config test_config() {
  redis_semaphores_config c;
  c.prefix = "t";
  c.max_primitives = 8;
  c.max_waiters = 4;
  c.recheck = 1000ms;
  c.waiter_heartbeat = scaled(5000ms);
  return c;
}

// One gatherd process's share: a command connection, a subscriber, the semaphores.
// `subscriber_url`: where its pub/sub goes (a dead address: every wake-up is lost).
struct replica {
  replica(executor ex, const std::string& url, redis_semaphores_config c = test_config(),
          millis timeout = 1000ms, std::string subscriber_url = "")
      : conn(ex, options_for(url, timeout)),
        hub(ex, options_for(subscriber_url.empty() ? url : subscriber_url, timeout), c.prefix),
        sems(ex, conn, hub, c) {}

  awaitable<void> open(bool wait_for_subscriber = true) {
    co_await conn.wait_connected(scaled(5000ms));
    co_await hub.start();
    if (wait_for_subscriber) co_await hub.wait_ready(scaled(5000ms));
    co_await sems.start();
  }
  awaitable<void> close() {
    co_await sems.shutdown();
    co_await hub.close();
    co_await conn.close();
  }

  connection conn;
  redis_wakeups hub;
  redis_semaphores sems;
};

// ---- what the memory backend's tests check --------------------------------------------------

TEST(RedisSemaphores, SemaphoreOfTwoRunsFiveHoldersInThreeWaves) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    co_await r.sems.put_semaphore("pool", 2);
    const auto t0 = steady_clock::now();
    const double hold = static_cast<double>(scaled(150ms).count());
    std::mutex m;
    std::vector<double> acquired;
    std::vector<std::uint64_t> tokens;
    int holding = 0, most = 0;
    auto worker = [&](int i) -> awaitable<void> {
      auto p = co_await r.sems.acquire("pool", false, holder("w" + std::to_string(i)), 5000ms);
      {
        std::lock_guard lock(m);
        acquired.push_back(ms_since(t0));
        tokens.push_back(p.fencing_token);
        most = std::max(most, ++holding);
      }
      co_await sleep_for(scaled(150ms));
      {
        std::lock_guard lock(m);
        --holding;
      }
      co_await r.sems.release("pool", false, p.id);
    };
    co_await (worker(0) && worker(1) && worker(2) && worker(3) && worker(4));
    EXPECT_EQ(most, 2);
    require(acquired.size() == 5, "five acquired");
    std::sort(acquired.begin(), acquired.end());
    EXPECT_LT(acquired[1], hold * 0.66);  // wave 1 at once
    EXPECT_GE(acquired[2], hold * 0.9);   // wave 2 after the first release
    EXPECT_GE(acquired[4], hold * 1.9);   // wave 3
    std::sort(tokens.begin(), tokens.end());
    EXPECT_EQ(std::adjacent_find(tokens.begin(), tokens.end()), tokens.end());
    const auto info = co_await r.sems.get_semaphore("pool", false);
    EXPECT_EQ(info.available, 2u);
    EXPECT_EQ(info.waiters, 0u);
    co_await r.close();
  });
}

TEST(RedisSemaphores, ReleaseOfAnUnknownOrAlreadyReleasedPermitIsNotHeld) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    co_await r.sems.put_semaphore("s", 1);
    auto p = co_await r.sems.acquire("s", false, holder("a"), 0ms);
    EXPECT_EQ(p.count, 1u);
    EXPECT_GE(p.fencing_token, 1u);
    EXPECT_EQ(co_await r.sems.release("s", false, p.id), 0u);
    EXPECT_EQ(co_await refusal_of(r.sems.release("s", false, p.id)), primitive_errc::not_held);
    EXPECT_EQ(co_await refusal_of(r.sems.release("s", false, "nope")), primitive_errc::not_held);
    EXPECT_EQ(co_await refusal_of(r.sems.release("absent", false, "nope")),
              primitive_errc::not_held);
    EXPECT_EQ((co_await r.sems.get_semaphore("s", false)).available, 1u);  // never above permits
    co_await r.close();
  });
}

TEST(RedisSemaphores, AcquireTimesOutAndLeavesNoWaiter) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    co_await r.sems.put_semaphore("s", 1);
    co_await r.sems.acquire("s", false, holder("a"), 0ms);
    EXPECT_EQ(co_await refusal_of(r.sems.acquire("s", false, holder("now"), 0ms)),
              primitive_errc::acquire_timeout);
    const auto t0 = steady_clock::now();
    EXPECT_EQ(co_await refusal_of(r.sems.acquire("s", false, holder("b"), 80ms)),
              primitive_errc::acquire_timeout);
    EXPECT_GE(ms_since(t0), 75.0);
    EXPECT_EQ((co_await r.sems.get_semaphore("s", false)).waiters, 0u);
    EXPECT_EQ(r.sems.local_waiters(), 0u);
    co_await r.close();
  });
}

TEST(RedisSemaphores, KeepaliveExtendsALease) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    co_await r.sems.put_semaphore("s", 1);
    auto p = co_await r.sems.acquire("s", false, holder("a", scaled(200ms)), 0ms);
    co_await sleep_for(scaled(50ms));
    auto kept = co_await r.sems.keepalive("s", false, p.id, scaled(1000ms));
    EXPECT_EQ(kept.id, p.id);
    EXPECT_EQ(kept.fencing_token, p.fencing_token);
    EXPECT_EQ(kept.holder, "a");
    EXPECT_GT(kept.expires_at, p.expires_at);
    co_await sleep_for(scaled(250ms));  // past the first deadline
    const auto info = co_await r.sems.get_semaphore("s", false);
    EXPECT_EQ(info.available, 0u);
    require(info.holders.size() == 1, "one holder");
    EXPECT_EQ(info.holders[0].id, p.id);
    co_await r.sems.release("s", false, p.id);
    EXPECT_EQ(co_await refusal_of(r.sems.keepalive("s", false, p.id, 100ms)),
              primitive_errc::not_held);
    co_await r.close();
  });
}

TEST(RedisSemaphores, AnExpiredLeaseCannotBeKeptAliveOrReleased) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    co_await r.sems.put_semaphore("s", 1);
    auto p = co_await r.sems.acquire("s", false, holder("a", 50ms), 0ms);
    co_await sleep_for(100ms);
    EXPECT_EQ(co_await refusal_of(r.sems.keepalive("s", false, p.id, 1000ms)),
              primitive_errc::not_held);
    EXPECT_EQ(co_await refusal_of(r.sems.release("s", false, p.id)), primitive_errc::not_held);
    EXPECT_EQ((co_await r.sems.get_semaphore("s", false)).available, 1u);
    co_await r.close();
  });
}

TEST(RedisSemaphores, ACancelledAcquireLeavesNoWaiterAndGetsNoPermit) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    co_await r.sems.put_semaphore("s", 1);
    auto p = co_await r.sems.acquire("s", false, holder("a"), 0ms);
    // The caller gives up after 50 ms (its client disconnected).
    co_await (r.sems.acquire("s", false, holder("gone"), 5000ms) || sleep_for(50ms));
    EXPECT_EQ((co_await r.sems.get_semaphore("s", false)).waiters, 0u);
    EXPECT_EQ(r.sems.local_waiters(), 0u);
    co_await r.sems.release("s", false, p.id);
    const auto info = co_await r.sems.get_semaphore("s", false);
    EXPECT_EQ(info.available, 1u);
    EXPECT_TRUE(info.holders.empty());
    co_await r.close();
  });
}

TEST(RedisSemaphores, AnUnknownSemaphoreIsNotFoundButALockExistsOnFirstUse) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    EXPECT_EQ(co_await refusal_of(r.sems.acquire("nope", false, holder("a"), 0ms)),
              primitive_errc::not_found);
    EXPECT_EQ(co_await refusal_of(r.sems.get_semaphore("nope", false)), primitive_errc::not_found);
    EXPECT_EQ(co_await refusal_of(r.sems.remove_semaphore("nope", false)),
              primitive_errc::not_found);
    auto p = co_await r.sems.acquire("door", true, holder("a"), 0ms);
    EXPECT_EQ(p.count, 1u);
    auto info = co_await r.sems.get_semaphore("door", true);
    EXPECT_EQ(info.permits, 1u);
    EXPECT_EQ(info.available, 0u);
    require(info.holders.size() == 1, "one holder");
    EXPECT_EQ(info.holders[0].holder, "a");
    EXPECT_EQ(info.holders[0].fencing_token, p.fencing_token);
    // put_lock leaves an existing lock as it is.
    EXPECT_EQ((co_await r.sems.put_lock("door")).available, 0u);
    co_await r.close();
  });
}

TEST(RedisSemaphores, AReentrantLockCountsAcquisitionsAndNeedsAsManyReleases) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    auto first = co_await r.sems.acquire("door", true, holder("a", 30000ms, true), 0ms);
    auto again = co_await r.sems.acquire("door", true, holder("a", 30000ms, true), 0ms);
    EXPECT_EQ(again.id, first.id);
    EXPECT_EQ(again.count, 2u);
    EXPECT_EQ(again.fencing_token, first.fencing_token);
    EXPECT_EQ(co_await refusal_of(r.sems.acquire("door", true, holder("b"), 0ms)),
              primitive_errc::acquire_timeout);
    EXPECT_EQ(co_await refusal_of(r.sems.acquire("door", true, holder("a"), 0ms)),
              primitive_errc::acquire_timeout);
    EXPECT_EQ(co_await r.sems.release("door", true, first.id), 1u);
    EXPECT_EQ((co_await r.sems.get_semaphore("door", true)).available, 0u);
    EXPECT_EQ(co_await r.sems.release("door", true, first.id), 0u);
    EXPECT_EQ((co_await r.sems.get_semaphore("door", true)).available, 1u);
    co_await r.close();
  });
}

TEST(RedisSemaphores, ReadsOfLocksCreateNothingAndTheCapRefusesANewPrimitive) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    for (int i = 0; i < 20; ++i) {  // more than the cap of 8
      const auto lock = co_await r.sems.get_semaphore("l" + std::to_string(i), true);
      EXPECT_EQ(lock.permits, 1u);
      EXPECT_EQ(lock.available, 1u);
    }
    for (int i = 0; i < 8; ++i) co_await r.sems.put_semaphore("s" + std::to_string(i), 1);
    EXPECT_EQ(co_await refusal_of(r.sems.put_lock("l")), primitive_errc::too_many_primitives);
    EXPECT_EQ(co_await refusal_of(r.sems.acquire("l", true, holder("a"), 0ms)),
              primitive_errc::too_many_primitives);
    co_await r.sems.put_semaphore("s0", 3);  // changing one is not creating one
    co_await r.sems.remove_semaphore("s0", false);
    co_await r.sems.acquire("l", true, holder("a"), 0ms);
    co_await r.close();
  });
}

TEST(RedisSemaphores, IdlePrimitivesExpireAndTheCapSaysWhenTheFirstGoes) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    auto c = test_config();
    c.idle_timeout = scaled(300ms);
    replica r(co_await net::this_coro::executor, server.url(), c);
    co_await r.open();
    for (int i = 0; i < 8; ++i) co_await r.sems.put_semaphore("s" + std::to_string(i), 1);
    std::optional<primitive_error> refused;
    try {
      co_await r.sems.put_semaphore("late", 1);
    } catch (const primitive_error& e) {
      refused = e;
    }
    require(refused.has_value(), "the 9th primitive is refused");
    EXPECT_EQ(refused->code(), primitive_errc::too_many_primitives);
    require(refused->retry_after().has_value(), "a retry_after");
    EXPECT_LE(*refused->retry_after(), c.idle_timeout);
    co_await sleep_for(*refused->retry_after() + 50ms);
    co_await r.sems.put_semaphore("late", 1);  // room, without a delete
    EXPECT_EQ(co_await refusal_of(r.sems.get_semaphore("s0", false)), primitive_errc::not_found);
    // A held lock outlives the idle time; it goes idle_timeout after its lease ends.
    co_await r.sems.acquire("l", true, holder("a", scaled(600ms)), 0ms);
    co_await sleep_for(scaled(450ms));
    EXPECT_EQ((co_await r.sems.get_semaphore("l", true)).available, 0u);
    co_await r.close();
  });
}

TEST(RedisSemaphores, ScriptsAreLoadedAgainAfterRedisForgetsThem) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    replica r(co_await net::this_coro::executor, server.url());
    co_await r.open();
    co_await r.sems.put_semaphore("s", 1);
    co_await r.conn.command("SCRIPT", "FLUSH");
    auto p = co_await r.sems.acquire("s", false, holder("a"), 0ms);
    EXPECT_EQ(co_await r.sems.release("s", false, p.id), 0u);
    co_await r.close();
  });
}

// ---- across replicas ------------------------------------------------------------------------

TEST(RedisSemaphores, WaitersAreServedFifoAcrossReplicasWithIncreasingTokens) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    replica a(ex, server.url()), b(ex, server.url());
    co_await a.open();
    co_await b.open();
    co_await a.sems.put_semaphore("s", 1);
    auto first = co_await a.sems.acquire("s", false, holder("first"), 1000ms);
    std::mutex m;
    std::vector<std::string> order;
    std::vector<std::uint64_t> tokens{first.fencing_token};
    auto waiter = [&](replica& via, std::string name, millis delay) -> awaitable<void> {
      co_await sleep_for(scaled(delay));
      auto p = co_await via.sems.acquire("s", false, holder(name), scaled(5000ms));
      {
        std::lock_guard lock(m);
        order.push_back(name);
        tokens.push_back(p.fencing_token);
      }
      co_await sleep_for(10ms);
      co_await via.sems.release("s", false, p.id);
    };
    auto releaser = [&]() -> awaitable<void> {
      co_await sleep_for(scaled(200ms));
      EXPECT_EQ((co_await b.sems.get_semaphore("s", false)).waiters, 4u);
      co_await a.sems.release("s", false, first.id);
    };
    co_await (waiter(b, "b", 10ms) && waiter(a, "c", 50ms) && waiter(b, "d", 90ms) &&
              waiter(a, "e", 130ms) && releaser());
    EXPECT_EQ(order, (std::vector<std::string>{"b", "c", "d", "e"}));
    EXPECT_TRUE(std::is_sorted(tokens.begin(), tokens.end()));
    EXPECT_EQ(std::adjacent_find(tokens.begin(), tokens.end()), tokens.end());
    co_await a.close();
    co_await b.close();
  });
}

TEST(RedisSemaphores, ASemaphoreOfTwoNeverHasThreeHoldersAcrossReplicas) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    auto c = test_config();
    c.max_waiters = 100;
    replica a(ex, server.url(), c), b(ex, server.url(), c);
    co_await a.open();
    co_await b.open();
    co_await a.sems.put_semaphore("pool", 2);
    std::atomic<int> holding{0}, most{0}, done{0};
    std::mutex m;
    std::set<std::uint64_t> tokens;
    auto worker = [&](replica& via, int i) -> awaitable<void> {
      auto p = co_await via.sems.acquire("pool", false, holder("w" + std::to_string(i)),
                                         scaled(20000ms));
      const int now = ++holding;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      {
        std::lock_guard lock(m);
        tokens.insert(p.fencing_token);
      }
      co_await sleep_for(5ms);
      --holding;
      co_await via.sems.release("pool", false, p.id);
      ++done;
    };
    std::vector<awaitable<void>> all;
    for (int i = 0; i < 20; ++i) all.push_back(worker(i % 2 == 0 ? a : b, i));
    for (auto& w : all) net::co_spawn(ex, std::move(w), net::detached);
    const bool finished = co_await eventually([&] { return done.load() == 20; }, 20000ms);
    EXPECT_TRUE(finished);
    EXPECT_EQ(most.load(), 2);
    EXPECT_EQ(tokens.size(), 20u);
    const auto info = co_await a.sems.get_semaphore("pool", false);
    EXPECT_EQ(info.available, 2u);
    EXPECT_EQ(info.waiters, 0u);
    co_await a.close();
    co_await b.close();
  });
}

TEST(RedisSemaphores, FencingTokensIncreaseAcrossReplicasAndTheirRestarts) {
  redis_server server;
  std::uint64_t last = 0;
  for (int round = 0; round < 2; ++round) {  // every instance destroyed, then made again
    run_io([&]() -> awaitable<void> {
      const auto ex = co_await net::this_coro::executor;
      replica a(ex, server.url()), b(ex, server.url());
      co_await a.open();
      co_await b.open();
      if (round == 0) co_await a.sems.put_semaphore("s", 1);
      for (int i = 0; i < 6; ++i) {
        replica& via = i % 2 == 0 ? a : b;
        auto p = co_await via.sems.acquire("s", false, holder("h"), 1000ms);
        EXPECT_GT(p.fencing_token, last);
        last = p.fencing_token;
        co_await via.sems.release("s", false, p.id);
        // Another name draws from the same counter: still increasing per name.
        auto other = co_await via.sems.acquire("other", true, holder("h"), 1000ms);
        EXPECT_GT(other.fencing_token, last);
        last = other.fencing_token;
        co_await via.sems.release("other", true, other.id);
      }
      // Deleted and made again: tokens go on from where they were.
      co_await a.sems.remove_semaphore("other", true);
      auto fresh = co_await b.sems.acquire("other", true, holder("h"), 1000ms);
      EXPECT_GT(fresh.fencing_token, last);
      last = fresh.fencing_token;
      co_await b.sems.release("other", true, fresh.id);
      co_await a.close();
      co_await b.close();
    });
  }
  EXPECT_GE(last, 26u);
}

TEST(RedisSemaphores, ALeaseOnOneReplicaEndsAndAWaiterOnAnotherGetsItWithAHigherToken) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    replica a(ex, server.url()), b(ex, server.url());
    co_await a.open();
    co_await b.open();
    const millis ttl = scaled(300ms);
    const auto t0 = steady_clock::now();
    auto crashed = co_await a.sems.acquire("leader", true, holder("a", ttl), 0ms);
    co_await a.close();  // the replica is gone: nobody releases or keeps it alive
    auto next = co_await b.sems.acquire("leader", true, holder("b"), scaled(5000ms));
    const double waited = ms_since(t0);
    EXPECT_GE(waited, static_cast<double>(ttl.count()) - 5);
    EXPECT_LT(waited, static_cast<double>((ttl + scaled(200ms)).count()));
    EXPECT_GT(next.fencing_token, crashed.fencing_token);
    EXPECT_EQ(co_await refusal_of(b.sems.release("leader", true, crashed.id)),
              primitive_errc::not_held);
    co_await b.close();
  });
}

TEST(RedisSemaphores, AReleaseOnOneReplicaWakesAWaiterOnAnotherPromptly) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    auto c = test_config();
    c.recheck = 5000ms;  // so only the wake-up can explain a prompt grant
    replica a(ex, server.url(), c), b(ex, server.url(), c);
    co_await a.open();
    co_await b.open();
    auto held = co_await a.sems.acquire("l", true, holder("a"), 0ms);
    steady_clock::time_point released{}, granted{};
    auto waiter = [&]() -> awaitable<void> {
      auto p = co_await b.sems.acquire("l", true, holder("b"), 10000ms);
      granted = steady_clock::now();
      EXPECT_GT(p.fencing_token, held.fencing_token);
      co_await b.sems.release("l", true, p.id);
    };
    auto releaser = [&]() -> awaitable<void> {
      co_await sleep_for(scaled(200ms));
      const bool parked = co_await eventually([&] { return b.sems.local_waiters() == 1; }, 1000ms);
      EXPECT_TRUE(parked);
      released = steady_clock::now();
      co_await a.sems.release("l", true, held.id);
    };
    const auto t0 = steady_clock::now();
    co_await (waiter() && releaser());
    const double woken_after =
        std::chrono::duration<double, std::milli>(granted - released).count();
    EXPECT_GE(woken_after, 0.0);
    EXPECT_LT(woken_after, static_cast<double>(scaled(250ms).count()));
    EXPECT_LT(ms_since(t0), static_cast<double>(scaled(1500ms).count()));
    co_await a.close();
    co_await b.close();
  });
}

TEST(RedisSemaphores, ALostWakeUpStillDeliversWithinTheRecheckInterval) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    auto c = test_config();
    c.recheck = scaled(400ms);
    replica a(ex, server.url(), c);
    // B's pub/sub points where nothing listens: every wake-up is lost to it.
    replica b(ex, server.url(), c, 1000ms, "unix:///nonexistent/gatherd-test.sock");
    co_await a.open();
    co_await b.open(false);
    EXPECT_FALSE(b.hub.ready());
    auto held = co_await a.sems.acquire("l", true, holder("a"), 0ms);
    steady_clock::time_point released{}, granted{};
    auto waiter = [&]() -> awaitable<void> {
      auto p = co_await b.sems.acquire("l", true, holder("b"), scaled(10000ms));
      granted = steady_clock::now();
      co_await b.sems.release("l", true, p.id);
    };
    auto releaser = [&]() -> awaitable<void> {
      co_await sleep_for(scaled(100ms));
      released = steady_clock::now();
      co_await a.sems.release("l", true, held.id);
    };
    co_await (waiter() && releaser());
    const double got_after = std::chrono::duration<double, std::milli>(granted - released).count();
    EXPECT_GE(got_after, 0.0);
    EXPECT_LT(got_after, static_cast<double>((c.recheck + scaled(200ms)).count()));
    co_await a.close();
    co_await b.close();
  });
}

TEST(RedisSemaphores, TheWaiterCapCountsWaitersOfEveryReplica) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    replica a(ex, server.url()), b(ex, server.url());
    co_await a.open();
    co_await b.open();
    co_await a.sems.put_semaphore("s", 1);
    auto p = co_await a.sems.acquire("s", false, holder("a"), 0ms);
    std::atomic<int> served{0};
    auto waiter = [&](replica& via, int i) -> awaitable<void> {
      auto q =
          co_await via.sems.acquire("s", false, holder("w" + std::to_string(i)), scaled(5000ms));
      co_await via.sems.release("s", false, q.id);
      ++served;
    };
    for (int i = 0; i < 4; ++i) net::co_spawn(ex, waiter(i % 2 == 0 ? a : b, i), net::detached);
    const bool four = co_await eventually(
        [&] { return a.sems.local_waiters() + b.sems.local_waiters() == 4; }, 2000ms);
    EXPECT_TRUE(four);
    EXPECT_EQ(co_await refusal_of(b.sems.acquire("s", false, holder("x"), 1000ms)),
              primitive_errc::too_many_waiters);
    co_await a.sems.release("s", false, p.id);
    const bool all = co_await eventually([&] { return served.load() == 4; }, 3000ms);
    EXPECT_TRUE(all);
    EXPECT_EQ((co_await b.sems.get_semaphore("s", false)).available, 1u);
    co_await a.close();
    co_await b.close();
  });
}

TEST(RedisSemaphores, DeletingWakesWaitersOfEveryReplicaWithATimeout) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    auto c = test_config();
    c.recheck = 5000ms;
    replica a(ex, server.url(), c), b(ex, server.url(), c);
    co_await a.open();
    co_await b.open();
    co_await a.sems.put_semaphore("s", 1);
    co_await a.sems.acquire("s", false, holder("a"), 0ms);
    auto waiter = [&]() -> awaitable<void> {
      const auto t0 = steady_clock::now();
      EXPECT_EQ(co_await refusal_of(b.sems.acquire("s", false, holder("b"), 10000ms)),
                primitive_errc::acquire_timeout);
      EXPECT_LT(ms_since(t0), static_cast<double>(scaled(1000ms).count()));
    };
    auto remover = [&]() -> awaitable<void> {
      co_await eventually([&] { return b.sems.local_waiters() == 1; }, 1000ms);
      co_await a.sems.remove_semaphore("s", false);
      co_await a.sems.put_semaphore("s", 1);  // made again at once: the waiter still gives up
    };
    co_await (waiter() && remover());
    co_await a.close();
    co_await b.close();
  });
}

TEST(RedisSemaphores, AStoppedRedisIsBackendUnavailableWithinTheTimeout) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    const millis timeout = scaled(400ms);
    auto c = test_config();
    c.recheck = scaled(300ms);
    replica r(ex, server.url(), c, 400ms);
    co_await r.open();
    co_await r.sems.put_semaphore("s", 1);
    co_await r.sems.acquire("s", false, holder("a"), 0ms);
    bool waiter_failed = false;
    std::atomic<bool> waiter_done{false};
    double waiter_after = -1;
    auto waiter = [&]() -> awaitable<void> {
      waiter_failed = co_await backend_failed(r.sems.acquire("s", false, holder("b"), 10000ms));
      waiter_done = true;
    };
    auto stall = [&]() -> awaitable<void> {
      co_await eventually([&] { return r.sems.local_waiters() == 1; }, 1000ms);
      server.pause();
      const auto t0 = steady_clock::now();
      const bool failed = co_await backend_failed(r.sems.get_semaphore("s", false));
      EXPECT_TRUE(failed);
      EXPECT_LT(ms_since(t0), static_cast<double>((timeout + scaled(300ms)).count()));
      co_await eventually([&] { return waiter_done.load(); }, 3000ms);
      waiter_after = ms_since(t0);
    };
    co_await (waiter() && stall());
    EXPECT_TRUE(waiter_failed);  // at its next re-check, within recheck + timeout
    EXPECT_LT(waiter_after, static_cast<double>((c.recheck + timeout + scaled(300ms)).count()));
    server.resume();
    co_await r.conn.wait_connected(scaled(5000ms));
    EXPECT_EQ((co_await r.sems.get_semaphore("s", false)).available, 0u);
    co_await r.close();
  });
}

}  // namespace
}  // namespace gatherd::core::redis::test
