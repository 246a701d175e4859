#include "libcore/retry_policy.hpp"

#include "libcore/fetch/fetcher.hpp"

#include <gtest/gtest.h>

namespace gatherd::core {
namespace {

TEST(RetryPolicy, BackoffGrowsExponentiallyUpToTheCap) {
  retry_policy p{5, millis{100}, 2.0, millis{500}, false};
  EXPECT_EQ(p.backoff_ceiling(1), millis{100});
  EXPECT_EQ(p.backoff_ceiling(2), millis{200});
  EXPECT_EQ(p.backoff_ceiling(3), millis{400});
  EXPECT_EQ(p.backoff_ceiling(4), millis{500});
}

TEST(RetryPolicy, FullJitterStaysWithinTheCeiling) {
  retry_policy p{5, millis{100}, 2.0, millis{10000}, true};
  std::mt19937_64 rng(42);
  bool below = false;
  for (int i = 0; i < 200; ++i) {
    auto b = p.backoff(3, rng);
    EXPECT_GE(b.count(), 0);
    EXPECT_LE(b.count(), 400);
    below |= b.count() < 400;
  }
  EXPECT_TRUE(below);
}

}  // namespace
}  // namespace gatherd::core

namespace gatherd::core {
namespace {

TEST(RetryPolicy, WithoutJitterTheBackoffIsTheCeiling) {
  retry_policy p{5, millis{50}, 3.0, millis{10000}, false};
  std::mt19937_64 rng(1);
  EXPECT_EQ(p.backoff(1, rng), millis{50});
  EXPECT_EQ(p.backoff(2, rng), millis{150});
  EXPECT_EQ(p.backoff(3, rng), millis{450});
}

TEST(RetryPolicy, DefaultsMatchTheContract) {
  const retry_policy none;  // no `retry` object: one attempt
  EXPECT_EQ(none.max_attempts, 1);
  const auto d = retry_policy::with_defaults();
  EXPECT_EQ(d.max_attempts, 3);
  EXPECT_EQ(d.initial_backoff, millis{100});
  EXPECT_DOUBLE_EQ(d.multiplier, 2.0);
  EXPECT_EQ(d.max_backoff, millis{10000});
  EXPECT_TRUE(d.jitter);
}

TEST(RetryPolicy, HugeAttemptNumbersStayAtTheCap) {
  retry_policy p{1000, millis{100}, 2.0, millis{5000}, false};
  EXPECT_EQ(p.backoff_ceiling(64), millis{5000});
  EXPECT_EQ(p.backoff_ceiling(999), millis{5000});  // 2^998 overflows a double: still capped
}

TEST(RetryPolicy, FullJitterSpreadsOverTheWholeRange) {
  retry_policy p{5, millis{100}, 2.0, millis{10000}, true};
  std::mt19937_64 rng(7);
  long lo = 1000, hi = -1;
  for (int i = 0; i < 1000; ++i) {
    const long b = p.backoff(1, rng).count();
    lo = std::min(lo, b);
    hi = std::max(hi, b);
  }
  EXPECT_LE(lo, 5);   // reaches near 0 ...
  EXPECT_GE(hi, 95);  // ... and near the ceiling
  EXPECT_LE(hi, 100);
}


// An upstream's Retry-After, as the fetcher's backoff reads it: delta-seconds or an HTTP-date,
// within a day.
TEST(RetryAfter, SecondsAndDatesWithinADay) {
  using fetch::retry_after;
  EXPECT_EQ(retry_after({{"Retry-After", "7"}}), millis{7000});
  EXPECT_EQ(retry_after({{"retry-after", "99999999999"}}), millis{86'400'000});
  EXPECT_EQ(retry_after({{"Retry-After", "99999999999999999999999"}}), millis{86'400'000});
  EXPECT_EQ(retry_after({{"Retry-After", std::string("Sun, 06 Nov 1994 08:49:37 GMT\0x", 31)}}),
            std::nullopt);
  EXPECT_EQ(retry_after({{"Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"}}), millis{0});
  // Found by fuzz_retry_after: the year 9999 overflowed the clock's nanoseconds (UB).
  EXPECT_EQ(retry_after({{"Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"}}), millis{86'400'000});
  EXPECT_EQ(retry_after({{"Retry-After", "soon"}}), std::nullopt);
  EXPECT_EQ(retry_after({{"Retry-After", "-5"}}), std::nullopt);
  EXPECT_EQ(retry_after({{"Retry-After", "-99999999999999999999999"}}), std::nullopt);
  EXPECT_EQ(retry_after({{"Content-Type", "text/plain"}}), std::nullopt);
}

}  // namespace
}  // namespace gatherd::core
