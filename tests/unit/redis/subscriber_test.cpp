// Pub/sub on its own connection: messages of channels and patterns, unsubscribing, and the
// subscription set made again after Redis restarts or stalls, announced by on_ready.
#include "libcore/redis/subscriber.hpp"

#include <boost/asio/this_coro.hpp>
#include <mutex>
#include <vector>

#include "redis_test.hpp"

namespace gatherd::core::redis::test {
namespace {

using namespace std::chrono_literals;

// What a subscriber delivers, kept for the test to read from another thread.
struct inbox {
  std::mutex mutex;
  std::vector<message> messages;
  std::vector<bool> readies;  // each on_ready's `reconnect`

  subscriber_handlers handlers() {
    subscriber_handlers h;
    h.on_message = [this](const message& m) {
      std::lock_guard lock(mutex);
      messages.push_back(m);
    };
    h.on_ready = [this](bool reconnect) {
      std::lock_guard lock(mutex);
      readies.push_back(reconnect);
    };
    return h;
  }
  std::size_t message_count() {
    std::lock_guard lock(mutex);
    return messages.size();
  }
  std::size_t ready_count() {
    std::lock_guard lock(mutex);
    return readies.size();
  }
  std::vector<message> all_messages() {
    std::lock_guard lock(mutex);
    return messages;
  }
  std::vector<bool> all_readies() {
    std::lock_guard lock(mutex);
    return readies;
  }
};

template <class... S>
std::vector<std::string> names(S... values) {
  std::vector<std::string> out;
  (out.emplace_back(values), ...);
  return out;
}

TEST(RedisSubscriber, ReceivesChannelAndPatternMessages) {
  redis_server server;
  inbox box;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    connection publisher(ex, options_for(server.url()));
    subscriber sub(ex, options_for(server.url()), box.handlers());
    co_await sub.wait_ready(scaled(5000ms));
    co_await publisher.wait_connected(scaled(5000ms));
    co_await sub.subscribe(names("jobs", "locks"));
    co_await sub.psubscribe(names("events.*"));

    const reply receivers = co_await publisher.command("PUBLISH", "jobs", "one");
    EXPECT_EQ(receivers.as_integer(), 1);
    co_await publisher.command("PUBLISH", "events.e1", "set");
    co_await publisher.command("PUBLISH", "other", "not for us");
    co_await publisher.command("PUBLISH", "locks", std::string("bin\0ary\r\n", 10));
    const bool all = co_await eventually([&] { return box.message_count() >= 3; }, 2000ms);
    EXPECT_TRUE(all);
    co_await sleep_for(50ms);  // nothing more arrives

    const auto got = box.all_messages();
    if (got.size() == 3) {
      EXPECT_EQ(got[0].channel, "jobs");
      EXPECT_EQ(got[0].payload, "one");
      EXPECT_EQ(got[0].pattern, "");
      EXPECT_EQ(got[1].channel, "events.e1");
      EXPECT_EQ(got[1].payload, "set");
      EXPECT_EQ(got[1].pattern, "events.*");
      EXPECT_EQ(got[2].channel, "locks");
      EXPECT_EQ(got[2].payload, std::string("bin\0ary\r\n", 10));
    } else {
      ADD_FAILURE() << got.size() << " messages, expected 3";
    }
    EXPECT_EQ(box.all_readies(), std::vector<bool>{false});
    co_await sub.close();
    co_await publisher.close();
  });
}

TEST(RedisSubscriber, UnsubscribeStopsDelivery) {
  redis_server server;
  inbox box;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    connection publisher(ex, options_for(server.url()));
    subscriber sub(ex, options_for(server.url()), box.handlers());
    co_await sub.wait_ready(scaled(5000ms));
    co_await publisher.wait_connected(scaled(5000ms));
    co_await sub.subscribe(names("a", "b"));
    co_await sub.unsubscribe(names("a"));
    const reply to_a = co_await publisher.command("PUBLISH", "a", "x");
    const reply to_b = co_await publisher.command("PUBLISH", "b", "y");
    EXPECT_EQ(to_a.as_integer(), 0);
    EXPECT_EQ(to_b.as_integer(), 1);
    const bool got = co_await eventually([&] { return box.message_count() >= 1; }, 2000ms);
    EXPECT_TRUE(got);
    co_await sub.unsubscribe(names("b"));
    const reply none = co_await publisher.command("PUBLISH", "b", "z");
    EXPECT_EQ(none.as_integer(), 0);
    // Still healthy with no subscription at all (its PINGs get +PONG then).
    co_await sleep_for(options_for(server.url(), 100ms).timeout);
    EXPECT_TRUE(sub.ready());
    co_await sub.close();
    co_await publisher.close();
  });
}

TEST(RedisSubscriber, ResubscribesAfterRedisRestarts) {
  redis_server server;
  inbox box;
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    auto options = options_for(server.url());
    options.observer = observer;
    subscriber sub(ex, options, box.handlers());
    co_await sub.wait_ready(scaled(5000ms));
    co_await sub.subscribe(names("wake"));
    co_await sub.psubscribe(names("wake.*"));

    server.kill();
    const bool lost = co_await eventually([&] { return !sub.ready(); }, 1000ms);
    EXPECT_TRUE(lost);
    // While down: kept in the set, subscribed on reconnect.
    const auto code = co_await error_of(sub.subscribe(names("later")));
    EXPECT_EQ(code, errc::disconnected);
    server.start();
    const bool again = co_await eventually([&] { return box.ready_count() == 2; }, 5000ms);
    EXPECT_TRUE(again);
    EXPECT_EQ(box.all_readies(), (std::vector<bool>{false, true}));

    connection publisher(ex, options_for(server.url()));
    co_await publisher.wait_connected(scaled(5000ms));
    const reply to_wake = co_await publisher.command("PUBLISH", "wake", "1");
    const reply to_pattern = co_await publisher.command("PUBLISH", "wake.x", "2");
    const reply to_later = co_await publisher.command("PUBLISH", "later", "3");
    EXPECT_EQ(to_wake.as_integer(), 1);
    EXPECT_EQ(to_pattern.as_integer(), 1);  // through the pattern
    EXPECT_EQ(to_later.as_integer(), 1);
    const bool got = co_await eventually([&] { return box.message_count() >= 3; }, 2000ms);
    EXPECT_TRUE(got);
    co_await sub.close();
    co_await publisher.close();
  });
  EXPECT_EQ(observer->reconnects.load(), 1);
  EXPECT_EQ(observer->disconnects.load(), 1);
}

TEST(RedisSubscriber, StalledRedisIsNoticedWithoutTraffic) {
  redis_server server;
  inbox box;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    const auto options = options_for(server.url(), 300ms);
    subscriber sub(ex, options, box.handlers());
    co_await sub.wait_ready(scaled(5000ms));
    co_await sub.subscribe(names("quiet"));

    server.pause();
    const auto t0 = steady_clock::now();
    // Quiet for a timeout, then a PING unanswered for a timeout: reset.
    const bool noticed = co_await eventually([&] { return !sub.ready(); }, 3000ms);
    EXPECT_TRUE(noticed);
    EXPECT_LT(ms_since(t0), static_cast<double>((3 * options.timeout + scaled(300ms)).count()));
    server.resume();
    const bool again = co_await eventually([&] { return box.ready_count() == 2; }, 5000ms);
    EXPECT_TRUE(again);

    connection publisher(ex, options_for(server.url()));
    co_await publisher.wait_connected(scaled(5000ms));
    const reply receivers = co_await publisher.command("PUBLISH", "quiet", "hello");
    EXPECT_EQ(receivers.as_integer(), 1);
    co_await sub.close();
    co_await publisher.close();
  });
}

}  // namespace
}  // namespace gatherd::core::redis::test
