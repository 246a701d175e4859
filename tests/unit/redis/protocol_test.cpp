// RESP2 through hiredis: commands encode binary-safe, and replies decode the same whether their
// bytes come at once or one at a time.
#include "libcore/redis/protocol.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "libcore/redis/error.hpp"

namespace gatherd::core::redis {
namespace {

using namespace std::string_literals;

TEST(Protocol, FormatsCommandsBinarySafe) {
  const std::vector<std::string> args = {"SET", "k", "a\r\nb\0c"s};
  EXPECT_EQ(format_command(args), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na\r\nb\0c\r\n"s);
  const std::vector<std::string> empty_arg = {"ECHO", ""};
  EXPECT_EQ(format_command(empty_arg), "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n");
}

const std::string every_type =
    "+OK\r\n"
    "-ERR wrong\r\n"
    ":-42\r\n"
    "$5\r\nhe\r\no\r\n"
    "$-1\r\n"
    "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+s\r\n"
    "*0\r\n"s;

std::vector<reply> expected_replies() {
  std::vector<reply> nested = {reply::make_string("a"), reply{}};
  std::vector<reply> outer = {reply::make_integer(1), reply::make_array(nested),
                              reply::make_status("s")};
  return {reply::make_status("OK"),
          reply::make_error("ERR wrong"),
          reply::make_integer(-42),
          reply::make_string("he\r\no"),
          reply{},
          reply::make_array(outer),
          reply::make_array({})};
}

TEST(Protocol, ParsesEveryTypeAtOnce) {
  reply_parser p;
  p.feed(every_type.data(), every_type.size());
  std::vector<reply> got;
  while (auto r = p.next()) got.push_back(std::move(*r));
  EXPECT_EQ(got, expected_replies());
}

TEST(Protocol, ParsesOneByteAtATime) {
  reply_parser p;
  std::vector<reply> got;
  for (char c : every_type) {
    p.feed(&c, 1);
    while (auto r = p.next()) got.push_back(std::move(*r));
  }
  EXPECT_EQ(got, expected_replies());
}

TEST(Protocol, GarbageIsAProtocolError) {
  reply_parser p;
  const std::string junk = "?what\r\n";
  p.feed(junk.data(), junk.size());
  try {
    p.next();
    FAIL() << "parsed garbage";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::protocol);
  }
}

TEST(Reply, AccessorsSayWhatWasExpected) {
  EXPECT_EQ(reply::make_integer(7).as_integer(), 7);
  EXPECT_EQ(reply::make_status("OK").as_string(), "OK");
  try {
    (void)reply::make_error("ERR no").as_integer();
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::server_error);
    EXPECT_STREQ(e.what(), "ERR no");
  }
  try {
    (void)reply::make_string("x").as_array();
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unexpected_reply);
    EXPECT_NE(std::string(e.what()).find("expected an array"), std::string::npos);
  }
  EXPECT_EQ(reply::make_error("ERR no").error_message(), "ERR no");
  EXPECT_EQ(reply{}.error_message(), "");
  EXPECT_LT(reply::make_string(std::string(1000, 'x')).describe().size(), 100u);  // log-sized
}

}  // namespace
}  // namespace gatherd::core::redis
