#include "libcore/fetch/egress_guard.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gatherd::core::fetch {
namespace {

using boost::asio::ip::make_address;
using boost::asio::ip::tcp;

class EgressRefused : public ::testing::TestWithParam<const char*> {};

TEST_P(EgressRefused, IsNotPublic) {
  EXPECT_FALSE(is_public_address(make_address(GetParam())));
}

INSTANTIATE_TEST_SUITE_P(
    Egress, EgressRefused,
    ::testing::Values("0.0.0.0", "0.255.255.255", "10.0.0.1", "10.255.255.255", "100.64.0.1",
                      "100.127.255.255", "127.0.0.1", "127.255.0.3", "169.254.169.254",
                      "169.254.0.1", "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1",
                      "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
                      "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "::", "::1",
                      "fe80::1", "febf::1", "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1",
                      "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3",
                      "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "::127.0.0.1", "::10.0.0.1"));

class EgressAllowed : public ::testing::TestWithParam<const char*> {};

TEST_P(EgressAllowed, IsPublic) {
  EXPECT_TRUE(is_public_address(make_address(GetParam())));
}

// The neighbours of every refused range are public: the prefixes are not too wide.
INSTANTIATE_TEST_SUITE_P(Egress, EgressAllowed,
                         ::testing::Values("1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0",
                                           "100.63.255.255", "100.128.0.0", "126.255.255.255",
                                           "128.0.0.0", "169.253.255.255", "169.255.0.0",
                                           "172.15.255.255", "172.32.0.0", "192.0.1.1", "192.0.3.1",
                                           "192.167.255.255", "192.169.0.0", "198.17.255.255",
                                           "198.20.0.0", "198.51.101.1", "203.0.114.1",
                                           "223.255.255.255", "2606:4700::1111",
                                           "2001:4860:4860::8888", "fec0::1", "2001:db9::1",
                                           "::ffff:8.8.8.8", "64:ff9b::808:808", "::8.8.8.8"));

std::vector<tcp::endpoint> endpoints(std::initializer_list<const char*> addresses) {
  std::vector<tcp::endpoint> out;
  for (const char* a : addresses) out.emplace_back(make_address(a), 80);
  return out;
}

TEST(EgressGuard, RefusesEveryPrivateEndpointWithoutSayingWhereItPoints) {
  const auto decision = check_egress({}, "internal.example", endpoints({"10.0.0.1", "::1"}));
  EXPECT_TRUE(decision.allowed.empty());
  ASSERT_TRUE(decision.refused.has_value());
  EXPECT_EQ(decision.refused->to_string(), "10.0.0.1");
  const std::string message = egress_denied_message("internal.example");
  EXPECT_THAT(message, ::testing::HasSubstr("internal.example"));
  EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr("10.0.0.1")));
  EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr("::1")));
}

TEST(EgressGuard, KeepsOnlyThePublicEndpoints) {
  const auto decision = check_egress({}, "mixed.example", endpoints({"127.0.0.1", "8.8.8.8"}));
  ASSERT_EQ(decision.allowed.size(), 1u);
  EXPECT_EQ(decision.allowed[0].address().to_string(), "8.8.8.8");
}

TEST(EgressGuard, AllowPrivateLetsEverythingThrough) {
  egress_policy policy;
  policy.allow_private = true;
  EXPECT_EQ(check_egress(policy, "x", endpoints({"127.0.0.1", "169.254.169.254"})).allowed.size(),
            2u);
}

TEST(EgressGuard, AllowHostsMatchesExactNamesIgnoringCase) {
  egress_policy policy;
  policy.allow_hosts = {"Internal.Example"};
  EXPECT_EQ(check_egress(policy, "internal.example", endpoints({"10.0.0.1"})).allowed.size(), 1u);
  EXPECT_TRUE(check_egress(policy, "a.internal.example", endpoints({"10.0.0.1"})).allowed.empty());
  EXPECT_TRUE(check_egress(policy, "internal.example.", endpoints({"10.0.0.1"})).allowed.empty());
}

}  // namespace
}  // namespace gatherd::core::fetch
