// Job ids and the names of states and kinds.
#include "libcore/job_id.hpp"

#include <gtest/gtest.h>

#include <set>

#include "libcore/job.hpp"

namespace gatherd::core {
namespace {

TEST(JobId, RandomIdsDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) seen.insert(job_id::random().to_string());
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(JobId, IsThirtyTwoLowercaseHexDigits) {
  for (int i = 0; i < 100; ++i) {
    const auto text = job_id::random().to_string();
    ASSERT_EQ(text.size(), 32u);
    for (char c : text) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << text;
  }
}

TEST(JobId, ParseRoundTrips) {
  for (int i = 0; i < 100; ++i) {
    const auto id = job_id::random();
    const auto back = job_id::parse(id.to_string());
    ASSERT_TRUE(back.has_value());
    EXPECT_TRUE(*back == id);
  }
  const auto fixed = job_id::parse("00112233445566778899aabbccddeeff");
  ASSERT_TRUE(fixed.has_value());
  EXPECT_EQ(fixed->bytes[0], 0x00);
  EXPECT_EQ(fixed->bytes[1], 0x11);
  EXPECT_EQ(fixed->bytes[15], 0xff);
  EXPECT_EQ(fixed->to_string(), "00112233445566778899aabbccddeeff");
}

TEST(JobId, ParseRejectsBadInput) {
  const std::string good = "00112233445566778899aabbccddeeff";
  EXPECT_FALSE(job_id::parse("").has_value());
  EXPECT_FALSE(job_id::parse(good.substr(0, 31)).has_value());
  EXPECT_FALSE(job_id::parse(good + "0").has_value());
  EXPECT_FALSE(job_id::parse("g0112233445566778899aabbccddeeff").has_value());
  EXPECT_FALSE(job_id::parse("0011223344556677-899aabbccddeeff").has_value());
  EXPECT_FALSE(job_id::parse("00112233445566778899aabbccddeef ").has_value());
  EXPECT_FALSE(job_id::parse("../../../../../../../../etc/pass").has_value());
  EXPECT_FALSE(job_id::parse(std::string(32, '\0')).has_value());
}

TEST(JobNames, StatesAndKindsRoundTrip) {
  for (auto s : all_job_states) EXPECT_EQ(parse_job_state(to_string(s)), s);
  for (auto k : all_job_kinds) EXPECT_EQ(parse_job_kind(to_string(k)), k);
  EXPECT_EQ(to_string(job_state::timed_out), "timed_out");
  EXPECT_EQ(to_string(job_state::cancelled), "cancelled");
  EXPECT_EQ(to_string(job_kind::compute), "compute");
  EXPECT_FALSE(parse_job_state("done").has_value());
  EXPECT_FALSE(parse_job_state("").has_value());
  EXPECT_FALSE(parse_job_kind("fetchh").has_value());
  EXPECT_TRUE(is_terminal(job_state::timed_out));
  EXPECT_TRUE(is_terminal(job_state::succeeded));
  EXPECT_FALSE(is_terminal(job_state::running));
  EXPECT_FALSE(is_terminal(job_state::queued));
}

}  // namespace
}  // namespace gatherd::core
