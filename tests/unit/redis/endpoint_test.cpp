// Parsing the --backend URL: every accepted form, and refusals that say what is wrong without
// echoing a password.
#include "libcore/redis/endpoint.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace gatherd::core::redis {
namespace {

TEST(Endpoint, TcpWithEverything) {
  const auto e = endpoint::parse("redis://alice:s3cret@cache.internal:6380/2");
  EXPECT_EQ(e.kind, endpoint::transport::tcp);
  EXPECT_EQ(e.host, "cache.internal");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(e.user, "alice");
  EXPECT_EQ(e.password, "s3cret");
  EXPECT_EQ(e.db, 2);
}

TEST(Endpoint, TcpDefaults) {
  const auto e = endpoint::parse("redis://localhost");
  EXPECT_EQ(e.host, "localhost");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.db, 0);
  EXPECT_TRUE(e.user.empty());
  EXPECT_TRUE(e.password.empty());
  EXPECT_EQ(endpoint::parse("redis://localhost:6379/").db, 0);
  EXPECT_EQ(endpoint::parse("REDIS://127.0.0.1:1/15").db, 15);
}

TEST(Endpoint, PasswordAloneAndPercentEncoding) {
  const auto e = endpoint::parse("redis://:p%40ss%3Aw%2Fd@h:1");
  EXPECT_TRUE(e.user.empty());
  EXPECT_EQ(e.password, "p@ss:w/d");
  // An unencoded '@' in the password still splits at the last one.
  EXPECT_EQ(endpoint::parse("redis://:a@b@h:1").password, "a@b");
}

TEST(Endpoint, Ipv6InBrackets) {
  const auto e = endpoint::parse("redis://[::1]:7000/1");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 7000);
  EXPECT_EQ(e.db, 1);
  EXPECT_EQ(e.to_string(), "redis://[::1]:7000/1");
}

TEST(Endpoint, UnixSocket) {
  const auto e = endpoint::parse("unix:///run/redis/redis.sock");
  EXPECT_EQ(e.kind, endpoint::transport::unix_socket);
  EXPECT_EQ(e.path, "/run/redis/redis.sock");
  EXPECT_EQ(e.db, 0);
  const auto d = endpoint::parse("unix://:pw@/tmp/r.sock?db=3");
  EXPECT_EQ(d.path, "/tmp/r.sock");
  EXPECT_EQ(d.password, "pw");
  EXPECT_EQ(d.db, 3);
}

TEST(Endpoint, ToStringNeverShowsThePassword) {
  EXPECT_EQ(endpoint::parse("redis://alice:s3cret@h:1/2").to_string(), "redis://alice:***@h:1/2");
  EXPECT_EQ(endpoint::parse("redis://:s3cret@h").to_string(), "redis://:***@h:6379");
  EXPECT_EQ(endpoint::parse("unix://:s3cret@/tmp/r.sock?db=4").to_string(),
            "unix://:***@/tmp/r.sock?db=4");
  EXPECT_EQ(endpoint::parse("unix:///tmp/r.sock").to_string(), "unix:///tmp/r.sock");
}

// The message of the refusal of `url`, or "accepted".
std::string refusal(const std::string& url) {
  try {
    endpoint::parse(url);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "accepted";
}

TEST(Endpoint, RefusesBadUrlsWithAReason) {
  struct bad {
    const char* url;
    const char* says;
  };
  const bad cases[] = {
      {"", "expected redis://"},
      {"localhost:6379", "expected redis://"},
      {"http://h:1", "unsupported scheme 'http'"},
      {"rediss://h:1", "TLS"},
      {"redis://", "host is missing"},
      {"redis://:6379", "host is missing"},
      {"redis://h:", "port is empty"},
      {"redis://h:0", "port must be a number from 1 to 65535"},
      {"redis://h:65536", "port must be"},
      {"redis://h:-1", "port must be"},
      {"redis://h:12ab", "port must be"},
      {"redis://h:1/x", "database must be a number"},
      {"redis://h:1/-1", "database must be a number"},
      {"redis://h:1/1/2", "database must be a number"},
      {"redis://h:1/99999999999", "database must be a number"},
      {"redis://h:1?db=2", "no query"},
      {"redis://h:1#x", "no query or fragment"},
      {"redis://::1:6379", "IPv6 address must be in brackets"},
      {"redis://[::1:6379", "misses its ']'"},
      {"redis://[zz]:1", "not an IPv6 address"},
      {"redis://[::1]x", "after the IPv6 address"},
      {"redis://ho st:1", "not a host name"},
      {"redis://alice@h:1", "credentials must be user:password@"},
      {"redis://alice:@h:1", "password is empty"},
      {"redis://:p%4@h:1", "percent-escape in the password"},
      {"redis://al%zzce:pw@h:1", "percent-escape in the user"},
      {"unix://", "socket path is missing"},
      {"unix:///", "socket path is missing"},
      {"unix://host/tmp/r.sock", "takes no host"},
      {"unix:///tmp/", "names a directory"},
      {"unix:///tmp/r.sock?db=x", "database must be a number"},
      {"unix:///tmp/r.sock?timeout=1", "unknown parameter 'timeout'"},
      {"unix:///tmp/r.sock#frag", "no fragment"},
  };
  for (const auto& c : cases) {
    const std::string message = refusal(c.url);
    EXPECT_NE(message.find(c.says), std::string::npos)
        << c.url << " -> " << message << " (expected it to say: " << c.says << ")";
  }
  const std::string long_path = "unix:///" + std::string(200, 'a');
  EXPECT_NE(refusal(long_path).find("longer than 107 bytes"), std::string::npos);
}

TEST(Endpoint, RefusalsNeverEchoThePassword) {
  EXPECT_EQ(refusal("redis://:hunter2@h:99999").find("hunter2"), std::string::npos);
  EXPECT_EQ(refusal("unix://:hunter2@host/x").find("hunter2"), std::string::npos);
}

}  // namespace
}  // namespace gatherd::core::redis
