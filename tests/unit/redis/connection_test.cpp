// The Redis connection against a real redis-server of the test's own: pipelining from many
// coroutines, error replies, large replies, timeouts on a stopped server, reconnects after a
// restart (unix socket and TCP), cancellation that keeps the stream in step, AUTH and SELECT.
#include "libcore/redis/connection.hpp"

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>

#include "redis_test.hpp"

namespace gatherd::core::redis::test {
namespace {

using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;

// Runs every coroutine of `ops` at once (on the caller's executor, which has two threads) and
// rethrows the first exception.
awaitable<void> all_of(std::vector<awaitable<void>> ops) {
  const auto ex = co_await net::this_coro::executor;
  std::vector<decltype(net::co_spawn(ex, std::declval<awaitable<void>>(), net::deferred))> group;
  for (auto& op : ops) group.push_back(net::co_spawn(ex, std::move(op), net::deferred));
  auto [order, errors] = co_await net::experimental::make_parallel_group(std::move(group))
                             .async_wait(net::experimental::wait_for_all(), net::use_awaitable);
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

awaitable<void> nothing() {
  co_return;
}

TEST(RedisConnection, PipelinedCommandsFromManyCoroutinesGetTheirOwnReplies) {
  redis_server server;
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    auto options = options_for(server.url());
    options.observer = observer;
    connection conn(co_await net::this_coro::executor, options);
    co_await conn.wait_connected(scaled(5000ms));

    constexpr int workers = 50;
    constexpr int each = 20;  // 1000 INCRs in all, each followed by an ECHO of its own
    std::atomic<int> mismatches{0};
    auto worker = [&](int id) -> awaitable<void> {
      const std::string key = "counter:" + std::to_string(id);
      for (int i = 1; i <= each; ++i) {
        const reply n = co_await conn.command("INCR", key);
        if (n.as_integer() != i) ++mismatches;
        const std::string tag = key + "#" + std::to_string(i);
        const reply echo = co_await conn.command("ECHO", tag);
        if (echo.as_string() != tag) ++mismatches;
      }
    };
    std::vector<awaitable<void>> ops;
    for (int id = 0; id < workers; ++id) ops.push_back(worker(id));
    co_await all_of(std::move(ops));

    EXPECT_EQ(mismatches.load(), 0);
    for (int id = 0; id < workers; ++id) {
      const reply total = co_await conn.command("GET", "counter:" + std::to_string(id));
      EXPECT_EQ(total.as_string(), std::to_string(each)) << id;
    }
    co_await conn.close();
  });
  EXPECT_EQ(observer->outcome(command_outcome::ok), 50 * 20 * 2 + 50);
  EXPECT_EQ(observer->connects.load(), 1);
}

TEST(RedisConnection, ErrorRepliesAreRepliesAndTheConnectionGoesOn) {
  redis_server server;
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    auto options = options_for(server.url());
    options.observer = observer;
    connection conn(co_await net::this_coro::executor, options);
    co_await conn.wait_connected(scaled(5000ms));

    const reply arity = co_await conn.command("INCR");
    EXPECT_TRUE(arity.is_error());
    EXPECT_NE(arity.error_message().find("wrong number of arguments"), std::string::npos)
        << arity.describe();

    co_await conn.command("SET", "word", "abc");
    const reply not_a_number = co_await conn.command("INCR", "word");
    EXPECT_TRUE(not_a_number.is_error());
    try {
      (void)not_a_number.as_integer();
      ADD_FAILURE() << "an error reply read as an integer";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::server_error);
    }

    const reply unknown = co_await conn.command("NO-SUCH-COMMAND", 1);
    EXPECT_NE(unknown.error_message().find("unknown command"), std::string::npos);

    const reply pong = co_await conn.command("PING");
    EXPECT_EQ(pong.as_string(), "PONG");
    EXPECT_TRUE(conn.connected());
    co_await conn.close();
  });
  EXPECT_EQ(observer->outcome(command_outcome::error_reply), 3);
  EXPECT_EQ(observer->disconnects.load(), 0);
}

TEST(RedisConnection, LargeBulkRepliesArriveWholeAndInOrder) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    connection conn(co_await net::this_coro::executor, options_for(server.url(), 5000ms));
    co_await conn.wait_connected(scaled(5000ms));
    // 4 MiB of every byte value, CR, LF and NUL included: hundreds of reads per reply.
    std::string big(std::size_t{4} << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i)
      big[i] = static_cast<char>((i * 7 + i / 251) % 256);
    co_await conn.command("SET", "big", big);

    std::atomic<int> wrong{0};
    auto reader = [&](int id) -> awaitable<void> {
      const reply r = co_await conn.command("GET", "big");
      if (r.as_string() != big) ++wrong;
      const std::string tag = "after-" + std::to_string(id);
      const reply echo = co_await conn.command("ECHO", tag);
      if (echo.as_string() != tag) ++wrong;
    };
    std::vector<awaitable<void>> ops;
    for (int id = 0; id < 4; ++id) ops.push_back(reader(id));
    co_await all_of(std::move(ops));
    EXPECT_EQ(wrong.load(), 0);
    const reply len = co_await conn.command("STRLEN", "big");
    EXPECT_EQ(len.as_integer(), static_cast<long long>(big.size()));
    co_await conn.close();
  });
}

TEST(RedisConnection, StoppedRedisTimesOutThenRecovers) {
  redis_server server;
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    auto options = options_for(server.url(), 400ms);
    options.observer = observer;
    connection conn(co_await net::this_coro::executor, options);
    co_await conn.wait_connected(scaled(5000ms));
    co_await conn.command("SET", "k", "v");

    server.pause();
    const auto t0 = steady_clock::now();
    std::atomic<int> timeouts{0};
    auto get = [&]() -> awaitable<void> {
      const auto code = co_await error_of(conn.command("GET", "k"));
      if (code == errc::timeout) ++timeouts;
    };
    std::vector<awaitable<void>> ops;
    for (int i = 0; i < 5; ++i) ops.push_back(get());
    co_await all_of(std::move(ops));
    const double waited = ms_since(t0);
    EXPECT_EQ(timeouts.load(), 5);
    EXPECT_GE(waited, static_cast<double>(options.timeout.count()) - 5);
    EXPECT_LT(waited, static_cast<double>((options.timeout + scaled(500ms)).count()));
    EXPECT_FALSE(conn.connected());

    // Meanwhile, commands fail at once and say why (reconnects cannot pass the PING).
    const auto t1 = steady_clock::now();
    const auto meanwhile = co_await error_of(conn.command("GET", "k"));
    EXPECT_EQ(meanwhile, errc::disconnected);
    EXPECT_LT(ms_since(t1), static_cast<double>(scaled(100ms).count()));
    co_await sleep_for(options.timeout + 200ms);
    EXPECT_FALSE(conn.connected());

    server.resume();
    co_await conn.wait_connected(scaled(5000ms));
    const reply kept = co_await conn.command("GET", "k");
    EXPECT_EQ(kept.as_string(), "v");
    co_await conn.close();
  });
  EXPECT_EQ(observer->outcome(command_outcome::timeout), 5);
  EXPECT_EQ(observer->reconnects.load(), 1);
  EXPECT_GE(observer->connect_failures.load(), 1);
}

class RedisReconnect : public ::testing::TestWithParam<bool> {};

TEST_P(RedisReconnect, AfterRedisIsKilledAndRestarted) {
  redis_server::options server_options;
  server_options.tcp = GetParam();
  redis_server server(server_options);
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    auto options = options_for(server.url());
    options.observer = observer;
    connection conn(co_await net::this_coro::executor, options);
    co_await conn.wait_connected(scaled(5000ms));
    co_await conn.command("SET", "k", "before");

    server.kill();
    // The loss is seen at once (the socket is reset), not at the next timeout.
    const bool lost = co_await eventually([&] { return !conn.connected(); }, 1000ms);
    EXPECT_TRUE(lost);
    const auto t0 = steady_clock::now();
    try {
      co_await conn.command("GET", "k");
      ADD_FAILURE() << "a command succeeded with Redis down";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::disconnected);
      EXPECT_NE(std::string(e.what()).find("not connected"), std::string::npos) << e.what();
    }
    EXPECT_LT(ms_since(t0), static_cast<double>(scaled(100ms).count()));
    const bool retried =
        co_await eventually([&] { return observer->connect_failures >= 2; }, 3000ms);
    EXPECT_TRUE(retried);

    server.start();
    co_await conn.wait_connected(scaled(5000ms));
    const reply gone = co_await conn.command("GET", "k");
    EXPECT_TRUE(gone.is_nil());  // a new, empty Redis
    co_await conn.command("SET", "k", "after");
    const reply after = co_await conn.command("GET", "k");
    EXPECT_EQ(after.as_string(), "after");
    co_await conn.close();
  });
  EXPECT_EQ(observer->connects.load(), 2);
  EXPECT_EQ(observer->reconnects.load(), 1);
  EXPECT_EQ(observer->disconnects.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(UnixAndTcp, RedisReconnect, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "tcp" : "unix"; });

TEST(RedisConnection, CancelledCommandsLeaveTheStreamInStep) {
  redis_server server;
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    auto options = options_for(server.url());
    options.observer = observer;
    connection conn(co_await net::this_coro::executor, options);
    co_await conn.wait_connected(scaled(5000ms));

    // Sent and cancelled before its reply (Redis answers it 300 ms later): the reply is dropped.
    const auto raced = co_await (conn.command("BLPOP", "no-such-list", "0.3") || sleep_for(50ms));
    EXPECT_EQ(raced.index(), 1u);
    const reply next = co_await conn.command("ECHO", "next");
    EXPECT_EQ(next.as_string(), "next");

    // Cancelled at once, many times: some never leave, some run; none shifts a reply.
    int cancelled = 0;
    for (int i = 0; i < 50; ++i) {
      const auto r = co_await (conn.command("INCR", "n") || nothing());
      if (r.index() == 1) ++cancelled;
      const std::string tag = "tag-" + std::to_string(i);
      const reply echo = co_await conn.command("ECHO", tag);
      EXPECT_EQ(echo.as_string(), tag);
    }
    EXPECT_GT(cancelled, 0);
    const reply counted = co_await conn.command("GET", "n");
    const long long n = counted.is_nil() ? 0 : std::stoll(counted.as_string());
    EXPECT_LE(n, 50);
    // A command cancelled before it even reached the connection's strand is never seen there.
    EXPECT_GE(observer->outcome(command_outcome::cancelled), 1);
    EXPECT_LE(observer->outcome(command_outcome::cancelled), 1 + cancelled);
    EXPECT_TRUE(conn.connected());
    co_await conn.close();
  });
  EXPECT_EQ(observer->disconnects.load(), 0);
}

TEST(RedisConnection, AuthWithPasswordAndAclUser) {
  redis_server::options server_options;
  server_options.requirepass = "p@ss:word";
  redis_server server(server_options);
  const std::string path = server.socket_path();
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    connection admin(ex, options_for("unix://:p%40ss%3Aword@" + path));
    co_await admin.wait_connected(scaled(5000ms));
    const reply admin_name = co_await admin.command("ACL", "WHOAMI");
    EXPECT_EQ(admin_name.as_string(), "default");
    const reply created =
        co_await admin.command("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all");
    EXPECT_EQ(created.as_string(), "OK");

    connection alice(ex, options_for("unix://alice:alice-pw@" + path));
    co_await alice.wait_connected(scaled(5000ms));
    const reply alice_name = co_await alice.command("ACL", "WHOAMI");
    EXPECT_EQ(alice_name.as_string(), "alice");

    co_await admin.close();
    co_await alice.close();
  });
}

TEST(RedisConnection, WrongOrMissingPasswordIsReportedNotRetriedSilently) {
  redis_server::options server_options;
  server_options.requirepass = "right";
  redis_server server(server_options);
  const std::string path = server.socket_path();
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    auto options = options_for("unix://:wrong@" + path);
    options.observer = observer;
    connection wrong(ex, options);
    try {
      co_await wrong.wait_connected(scaled(500ms));
      ADD_FAILURE() << "connected with a wrong password";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::timeout);
      EXPECT_NE(std::string(e.what()).find("AUTH failed: WRONGPASS"), std::string::npos)
          << e.what();
      EXPECT_EQ(std::string(e.what()).find("wrong@"), std::string::npos) << "password leaked";
    }
    try {
      co_await wrong.command("PING");
      ADD_FAILURE() << "a command succeeded without logging in";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::disconnected);
      EXPECT_NE(std::string(e.what()).find("WRONGPASS"), std::string::npos) << e.what();
    }
    EXPECT_GE(observer->connect_failures.load(), 1);

    connection none(ex, options_for("unix://" + path));
    const auto code = co_await error_of(none.wait_connected(scaled(500ms)));
    EXPECT_EQ(code, errc::timeout);
    try {
      co_await none.command("PING");
    } catch (const error& e) {
      EXPECT_NE(std::string(e.what()).find("NOAUTH"), std::string::npos) << e.what();
    }
    co_await wrong.close();
    co_await none.close();
  });
}

TEST(RedisConnection, SelectsTheDatabaseOfTheUrl) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    connection db3(ex, options_for(server.url() + "?db=3"));
    connection db0(ex, options_for(server.url()));
    co_await db3.wait_connected(scaled(5000ms));
    co_await db0.wait_connected(scaled(5000ms));
    co_await db3.command("SET", "where", "three");
    const reply in_db0 = co_await db0.command("GET", "where");
    EXPECT_TRUE(in_db0.is_nil());
    const reply selected = co_await db0.command("SELECT", 3);
    EXPECT_EQ(selected.as_string(), "OK");
    const reply in_db3 = co_await db0.command("GET", "where");
    EXPECT_EQ(in_db3.as_string(), "three");
    const reply client = co_await db3.command("CLIENT", "INFO");
    const std::string info = client.as_string();
    EXPECT_NE(info.find(" db=3 "), std::string::npos) << info;
    co_await db3.close();
    co_await db0.close();
  });
}

TEST(RedisConnection, FailsFastWhenNothingListensAndClosesPromptly) {
  auto observer = std::make_shared<counting_observer>();
  run_io([&]() -> awaitable<void> {
    auto options = options_for("unix:///nonexistent-gatherd-dir/redis.sock");
    options.observer = observer;
    connection conn(co_await net::this_coro::executor, options);
    const auto t0 = steady_clock::now();
    try {
      co_await conn.command("PING");
      ADD_FAILURE() << "PING succeeded with nothing listening";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::disconnected);
      EXPECT_NE(std::string(e.what()).find("unix:///nonexistent-gatherd-dir/redis.sock"),
                std::string::npos)
          << e.what();
    }
    EXPECT_LT(ms_since(t0), static_cast<double>(scaled(100ms).count()));
    const auto not_yet = co_await error_of(conn.wait_connected(100ms));
    EXPECT_EQ(not_yet, errc::timeout);
    const bool retried =
        co_await eventually([&] { return observer->connect_failures >= 3; }, 3000ms);
    EXPECT_TRUE(retried);

    const auto t1 = steady_clock::now();
    co_await conn.close();
    EXPECT_LT(ms_since(t1), static_cast<double>(scaled(200ms).count()));
    const auto after_close = co_await error_of(conn.command("PING"));
    EXPECT_EQ(after_close, errc::closed);
    co_await conn.close();  // idempotent
  });
}

TEST(RedisConnection, CloseFailsPendingCommands) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    const auto ex = co_await net::this_coro::executor;
    connection conn(ex, options_for(server.url(), 5000ms));
    co_await conn.wait_connected(scaled(5000ms));
    const auto t0 = steady_clock::now();
    auto blocked = [&]() -> awaitable<void> {
      const auto code = co_await error_of(conn.command("BLPOP", "no-such-list", 3));
      EXPECT_EQ(code, errc::closed);
    };
    auto closer = [&]() -> awaitable<void> {
      co_await sleep_for(50ms);
      co_await conn.close();
    };
    std::vector<awaitable<void>> ops;
    ops.push_back(blocked());
    ops.push_back(closer());
    co_await all_of(std::move(ops));
    EXPECT_LT(ms_since(t0), static_cast<double>(scaled(1000ms).count()));
  });
}

TEST(RedisConnection, DestroyedWithoutCloseStopsItsBackgroundWork) {
  redis_server server;
  run_io([&]() -> awaitable<void> {
    auto conn =
        std::make_unique<connection>(co_await net::this_coro::executor, options_for(server.url()));
    co_await conn->wait_connected(scaled(5000ms));
    co_await conn->command("PING");
    conn.reset();  // run_io joins its threads only once nothing is left running
  });
}

}  // namespace
}  // namespace gatherd::core::redis::test
