// The compute kind (primes, sha256), its pieces, and the worker pool it runs on.
#include "libcore/kinds/compute.hpp"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include "engine_fixture.hpp"
#include "libcore/worker_pool.hpp"

namespace gatherd::core {
namespace {

using namespace test;

std::uint64_t naive_prime_count(std::uint64_t n) {
  if (n < 2) return 0;
  std::vector<bool> composite(n + 1, false);
  std::uint64_t count = 0;
  for (std::uint64_t i = 2; i <= n; ++i) {
    if (composite[i]) continue;
    ++count;
    for (std::uint64_t j = i * i; j <= n; j += i) composite[j] = true;
  }
  return count;
}

std::uint64_t count_primes(std::uint64_t n) {
  prime_counter c(n);
  while (!c.done()) c.step();
  return c.count();
}

std::string hex(const unsigned char* d, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[d[i] >> 4];
    out += digits[d[i] & 0xf];
  }
  return out;
}

// Reference: round 1 hashes the bytes of `data`, each later round the previous raw digest.
std::string reference_chain(const std::string& data, std::uint64_t rounds) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  for (std::uint64_t i = 1; i < rounds; ++i) SHA256(d, sizeof d, d);
  return hex(d, sizeof d);
}

std::string run_chain(const std::string& data, std::uint64_t rounds) {
  sha256_chain c(data, rounds);
  while (!c.done()) c.step();
  return c.hex();
}

// ---- the pieces -----------------------------------------------------------------------------

TEST(PrimeCounter, SmallKnownCounts) {
  EXPECT_EQ(count_primes(0), 0u);
  EXPECT_EQ(count_primes(1), 0u);
  EXPECT_EQ(count_primes(2), 1u);
  EXPECT_EQ(count_primes(3), 2u);
  EXPECT_EQ(count_primes(10), 4u);
  EXPECT_EQ(count_primes(49), 15u);  // a perfect square
  EXPECT_EQ(count_primes(100), 25u);
  EXPECT_EQ(count_primes(1000), 168u);
}

TEST(PrimeCounter, MatchesANaiveSieveAcrossSegmentBoundaries) {
  constexpr std::uint64_t seg = 1 << 18;
  for (std::uint64_t n : {seg - 1, seg, seg + 1, 2 * seg + 1, 3 * seg + 7}) {
    EXPECT_EQ(count_primes(n), naive_prime_count(n)) << "n = " << n;
  }
}

TEST(Sha256Chain, OneRoundIsTheDigestOfTheData) {
  EXPECT_EQ(run_chain("abc", 1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(run_chain("", 1), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Chain, LaterRoundsHashTheRawPreviousDigest) {
  EXPECT_EQ(run_chain("abc", 2), reference_chain("abc", 2));
  EXPECT_EQ(run_chain("abc", 3), reference_chain("abc", 3));
  // Across the boundary of one step's rounds.
  for (std::uint64_t r : {19999u, 20000u, 20001u, 20002u, 45001u}) {
    EXPECT_EQ(run_chain("gatherd", r), reference_chain("gatherd", r)) << "rounds = " << r;
  }
}

// ---- the worker pool ------------------------------------------------------------------------

TEST_F(engine_test, WorkerPoolRunsWorkOffTheIoThreadsAndResumesOnThem) {
  io_threads = 2;
  worker_pool pool(2);
  run([&]() -> awaitable<void> {
    for (int i = 0; i < 20; ++i) {
      const auto before = std::this_thread::get_id();
      EXPECT_TRUE(is_io_thread(before));
      const auto worker = co_await pool.run([] { return std::this_thread::get_id(); });
      EXPECT_FALSE(is_io_thread(worker));
      EXPECT_NE(worker, before);
      EXPECT_TRUE(is_io_thread(std::this_thread::get_id()));  // resumed on the io_context
    }
    EXPECT_EQ(co_await pool.run([] { return 6 * 7; }), 42);
  });
}

TEST_F(engine_test, WorkerPoolPropagatesExceptions) {
  worker_pool pool(1);
  run([&]() -> awaitable<void> {
    std::string caught;
    try {
      co_await pool.run([]() -> int { throw std::runtime_error("worker failed"); });
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    EXPECT_EQ(caught, "worker failed");
  });
}

TEST(WorkerPool, CancelledCallerThrowsBeforeTheWorkStarts) {
  net::io_context io;
  worker_pool pool(1);
  net::cancellation_signal signal;
  std::atomic<bool> ran{false};
  bool aborted = false, reached = false;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        net::steady_timer t(co_await net::this_coro::executor, std::chrono::hours(1));
        co_await t.async_wait(net::as_tuple(net::use_awaitable));  // ended by the cancellation
        reached = true;
        try {
          co_await pool.run([&] {
            ran = true;
            return 0;
          });
        } catch (const boost::system::system_error& e) {
          aborted = e.code() == net::error::operation_aborted;
        }
      },
      net::bind_cancellation_slot(signal.slot(), net::detached));
  io.poll();
  signal.emit(net::cancellation_type::terminal);
  io.run();
  pool.stop();
  EXPECT_TRUE(reached);
  EXPECT_TRUE(aborted);
  EXPECT_FALSE(ran.load());
}

// ---- compute jobs through the engine --------------------------------------------------------

TEST_F(engine_test, PrimesJobCountsPrimes) {
  run([&]() -> awaitable<void> {
    auto small = (co_await eng().submit(primes_spec(100))).job.id;
    auto big = (co_await eng().submit(primes_spec(1'000'000))).job.id;
    auto s = co_await eng().get(small, 10000ms);
    auto b = co_await eng().get(big, 10000ms);
    EXPECT_EQ(s.state, job_state::succeeded);
    EXPECT_EQ(s.kind, job_kind::compute);
    EXPECT_EQ(result_of(s), (json{{"count", 25}}));
    EXPECT_EQ(b.state, job_state::succeeded);
    EXPECT_EQ(result_of(b), (json{{"count", 78498}}));
  });
}

TEST_F(engine_test, Sha256JobHashesInRounds) {
  run([&]() -> awaitable<void> {
    auto one = (co_await eng().submit(sha256_spec("abc", 1))).job.id;
    auto two = (co_await eng().submit(sha256_spec("abc", 2))).job.id;
    auto many = (co_await eng().submit(sha256_spec("abc", 50000))).job.id;
    auto r1 = co_await eng().get(one, 10000ms);
    auto r2 = co_await eng().get(two, 10000ms);
    auto rm = co_await eng().get(many, 10000ms);
    EXPECT_EQ(r1.state, job_state::succeeded);
    EXPECT_EQ(result_of(r1),
              (json{{"hex", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}}));

    // Round 2 hashes the raw 32-byte digest of round 1 (not its hex text).
    unsigned char d1[SHA256_DIGEST_LENGTH], d2[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>("abc"), 3, d1);
    SHA256(d1, sizeof d1, d2);
    EXPECT_EQ(result_of(r2), (json{{"hex", hex(d2, sizeof d2)}}));
    EXPECT_EQ(result_of(rm), (json{{"hex", reference_chain("abc", 50000)}}));
  });
}

TEST_F(engine_test, CancelLandsBetweenChunksOfABigComputeJob) {
  run([&]() -> awaitable<void> {
    auto id = (co_await eng().submit(primes_spec(5'000'000'000ull))).job.id;
    co_await sleep_for(50ms);
    EXPECT_EQ((co_await eng().get(id)).state, job_state::running);
    const auto t0 = steady_clock::now();
    co_await eng().cancel(id, "too slow");
    auto done = co_await eng().get(id, 5000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(done.state, job_state::cancelled);
    EXPECT_EQ(done.error, (job_error{"cancelled", "too slow"}));
    EXPECT_LE(elapsed, 150.0 * time_scale());  // the step under way finishes first
  });
}

TEST_F(engine_test, TimeoutStopsABigComputeJob) {
  run([&]() -> awaitable<void> {
    auto spec = sha256_spec("x", 1'000'000'000);
    spec.timeout = 60ms;
    const auto t0 = steady_clock::now();
    auto id = (co_await eng().submit(spec)).job.id;
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::timed_out);
    // At most one step of hashing after the deadline: ~20 ms, 130-230 ms under TSan.
    EXPECT_LE(ms_since(t0), 300.0 * time_scale());
  });
}

}  // namespace
}  // namespace gatherd::core
