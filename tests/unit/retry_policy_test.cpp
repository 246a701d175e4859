#include "libcore/retry_policy.hpp"

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
