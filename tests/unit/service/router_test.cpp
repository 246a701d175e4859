// The route table: matching against the service's real table (service/api/routes.hpp) and a
// small table of its own, 404 / 405 with Allow, path and query parameters, invalid targets.
#include "service/http/router.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "service/api/routes.hpp"

namespace gatherd::service {
namespace {

using query_list = std::vector<std::pair<std::string, std::string>>;

core::awaitable<http_response> dummy(api_context&, const http_request&, const route_match&) {
  co_return http_response{};
}

core::awaitable<http_response> other(api_context&, const http_request&, const route_match&) {
  co_return http_response{};
}

class ApiRoutes : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { table_ = new route_table(api_routes()); }
  static void TearDownTestSuite() {
    delete table_;
    table_ = nullptr;
  }
  static const route_table& table() { return *table_; }

  // The pattern matched by `method target`, or "" when none.
  static std::string matched(std::string_view method, std::string_view target) {
    const routing r = table().find(method, target);
    return r.matched ? r.matched->pattern : std::string();
  }

 private:
  static route_table* table_;
};

route_table* ApiRoutes::table_ = nullptr;

TEST_F(ApiRoutes, LiteralRoutes) {
  for (const auto& [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/healthz"},
                                                        {"GET", "/readyz"},
                                                        {"GET", "/metrics"},
                                                        {"GET", "/openapi.yaml"},
                                                        {"POST", "/v1/jobs"},
                                                        {"GET", "/v1/jobs"},
                                                        {"POST", "/v1/gather"},
                                                        {"POST", "/v1/fetch"},
                                                        {"GET", "/v1/ws"}}) {
    const routing r = table().find(method, path);
    ASSERT_NE(r.matched, nullptr) << method << " " << path;
    EXPECT_EQ(r.matched->method, method);
    EXPECT_EQ(r.matched->pattern, path);
    EXPECT_EQ(r.match.route, path);
    EXPECT_TRUE(r.match.path_params.empty());
    EXPECT_TRUE(r.match.query.empty());
    EXPECT_TRUE(r.allow.empty());
    EXPECT_FALSE(r.bad_target);
    EXPECT_NE(r.matched->handle, nullptr);
  }
}

TEST_F(ApiRoutes, PatternCapturesPathParameter) {
  const routing r = table().find("GET", "/v1/jobs/abc");
  ASSERT_NE(r.matched, nullptr);
  EXPECT_EQ(r.matched->pattern, "/v1/jobs/{id}");
  EXPECT_EQ(r.match.route, "/v1/jobs/{id}");
  EXPECT_EQ(r.match.path_params, std::vector<std::string>{"abc"});
  EXPECT_FALSE(r.bad_target);

  const routing cancel = table().find("POST", "/v1/jobs/0123abcd/cancel");
  ASSERT_NE(cancel.matched, nullptr);
  EXPECT_EQ(cancel.matched->pattern, "/v1/jobs/{id}/cancel");
  EXPECT_EQ(cancel.match.path_params, std::vector<std::string>{"0123abcd"});

  const routing acquire = table().find("POST", "/v1/locks/db-migrations/acquire");
  ASSERT_NE(acquire.matched, nullptr);
  EXPECT_EQ(acquire.matched->pattern, "/v1/locks/{name}/acquire");
  EXPECT_EQ(acquire.match.path_params, std::vector<std::string>{"db-migrations"});

  EXPECT_EQ(matched("DELETE", "/v1/jobs/abc"), "/v1/jobs/{id}");
  EXPECT_EQ(matched("PUT", "/v1/semaphores/s1"), "/v1/semaphores/{name}");
  EXPECT_EQ(matched("GET", "/v1/events/e"), "/v1/events/{name}");
  EXPECT_EQ(matched("POST", "/v1/events/e/set"), "/v1/events/{name}/set");
  EXPECT_EQ(matched("POST", "/v1/barriers/b/wait"), "/v1/barriers/{name}/wait");
  EXPECT_EQ(matched("GET", "/v1/queues/q/join"), "/v1/queues/{name}/join");
}

TEST_F(ApiRoutes, PathParameterIsPercentDecoded) {
  const routing r = table().find("GET", "/v1/queues/a%20b");
  ASSERT_NE(r.matched, nullptr);
  EXPECT_EQ(r.matched->pattern, "/v1/queues/{name}");
  EXPECT_EQ(r.match.path_params, std::vector<std::string>{"a b"});
}

TEST_F(ApiRoutes, LiteralShadowsPattern) {
  const routing r = table().find("POST", "/v1/jobs/batch");
  ASSERT_NE(r.matched, nullptr);
  EXPECT_EQ(r.matched->pattern, "/v1/jobs/batch");
  EXPECT_TRUE(r.match.path_params.empty());

  // Only the literal's methods are offered for the shadowed path, not GET /v1/jobs/{id}'s.
  const routing get = table().find("GET", "/v1/jobs/batch");
  EXPECT_EQ(get.matched, nullptr);
  EXPECT_EQ(get.allow, "POST");
}

TEST_F(ApiRoutes, NoRouteIs404WithoutAllow) {
  for (const char* target :
       {"/nope", "/", "/v1", "/v1/jobs/abc/nope", "/healthz/", "/v2/jobs", "/v1/jobs/a/b/c/d"}) {
    const routing r = table().find("GET", target);
    EXPECT_EQ(r.matched, nullptr) << target;
    EXPECT_TRUE(r.allow.empty()) << target;
    EXPECT_FALSE(r.bad_target) << target;
  }
}

TEST_F(ApiRoutes, WrongMethodIs405WithAllowInTableOrder) {
  auto allow = [](std::string_view method, std::string_view target) {
    const routing r = table().find(method, target);
    EXPECT_EQ(r.matched, nullptr) << method << " " << target;
    EXPECT_FALSE(r.bad_target);
    return r.allow;
  };
  // jobs.cpp adds POST /v1/jobs before GET /v1/jobs.
  EXPECT_EQ(allow("PATCH", "/v1/jobs"), "POST, GET");
  EXPECT_EQ(allow("DELETE", "/v1/jobs"), "POST, GET");
  EXPECT_EQ(allow("PUT", "/v1/jobs/abc"), "GET, DELETE");
  EXPECT_EQ(allow("GET", "/v1/jobs/abc/cancel"), "POST");
  EXPECT_EQ(allow("POST", "/healthz"), "GET");
  EXPECT_EQ(allow("GET", "/v1/gather"), "POST");
  EXPECT_EQ(allow("POST", "/v1/semaphores/s"), "PUT, GET, DELETE");
  EXPECT_EQ(allow("GET", "/v1/semaphores/s/acquire"), "POST");
  EXPECT_EQ(allow("POST", "/v1/events/e"), "PUT, GET, DELETE");
  EXPECT_EQ(allow("POST", "/v1/queues/q/join"), "GET");
  // Methods are case-sensitive (RFC 9110).
  EXPECT_EQ(allow("get", "/healthz"), "GET");
}

TEST_F(ApiRoutes, QueryParametersArePercentDecoded) {
  const routing r =
      table().find("GET", "/v1/jobs?label=team%3Aa&label=env%3Aprod&limit=5&after=&q=a%20b%26c");
  ASSERT_NE(r.matched, nullptr);
  EXPECT_EQ(r.matched->pattern, "/v1/jobs");
  EXPECT_EQ(r.match.query, (query_list{{"label", "team:a"},
                                       {"label", "env:prod"},
                                       {"limit", "5"},
                                       {"after", ""},
                                       {"q", "a b&c"}}));

  const routing id = table().find("GET", "/v1/jobs/abc?wait_ms=5000");
  ASSERT_NE(id.matched, nullptr);
  EXPECT_EQ(id.match.path_params, std::vector<std::string>{"abc"});
  EXPECT_EQ(id.match.query, (query_list{{"wait_ms", "5000"}}));

  // The query does not take part in matching: a 404 or 405 still carries it.
  EXPECT_EQ(table().find("PATCH", "/v1/jobs?limit=1").allow, "POST, GET");
}

TEST_F(ApiRoutes, EmptySegmentDoesNotMatchParameter) {
  EXPECT_EQ(matched("GET", "/v1/jobs/"), "");
  EXPECT_TRUE(table().find("GET", "/v1/jobs/").allow.empty());
  EXPECT_EQ(matched("POST", "/v1/jobs//cancel"), "");
  EXPECT_TRUE(table().find("POST", "/v1/jobs//cancel").allow.empty());
  EXPECT_EQ(matched("POST", "/v1/semaphores//acquire"), "");
}

TEST_F(ApiRoutes, InvalidTargetIsBadTarget) {
  for (const char* target :
       {"v1/jobs", "http://example.com/v1/jobs", "*", "", "/v1/jobs/%zz", "/v1/jobs/a b"}) {
    const routing r = table().find("GET", target);
    EXPECT_TRUE(r.bad_target) << "'" << target << "'";
    EXPECT_EQ(r.matched, nullptr) << target;
    EXPECT_TRUE(r.allow.empty()) << target;
  }
}

TEST_F(ApiRoutes, EveryRouteOnceWithAHandler) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const route& r : table().routes()) {
    EXPECT_TRUE(seen.emplace(r.method, r.pattern).second) << r.method << " " << r.pattern;
    EXPECT_NE(r.handle, nullptr) << r.method << " " << r.pattern;
    EXPECT_TRUE(r.pattern.starts_with('/')) << r.pattern;
    // Every route is reachable: a target built from its pattern finds it again.
    std::string target = r.pattern;
    for (std::size_t open; (open = target.find('{')) != std::string::npos;) {
      target.replace(open, target.find('}', open) - open + 1, "x");
    }
    const routing found = table().find(r.method, target);
    EXPECT_EQ(found.matched, &r) << r.method << " " << r.pattern;
  }
  EXPECT_EQ(seen.size(), table().routes().size());
  EXPECT_EQ(table().routes().size(), 41u);
  EXPECT_EQ(table().routes().front().method + " " + table().routes().front().pattern,
            "GET /healthz");
}

TEST_F(ApiRoutes, LongWaitingRoutesAreMarked) {
  const std::set<std::pair<std::string, std::string>> waiting = {
      {"GET", "/v1/jobs/{id}"},
      {"POST", "/v1/gather"},
      {"POST", "/v1/fetch"},
      {"POST", "/v1/semaphores/{name}/acquire"},
      {"POST", "/v1/locks/{name}/acquire"},
      {"GET", "/v1/events/{name}"},
      {"POST", "/v1/barriers/{name}/wait"},
      {"POST", "/v1/queues/{name}/put"},
      {"POST", "/v1/queues/{name}/get"},
      {"GET", "/v1/queues/{name}/join"},
  };
  std::set<std::pair<std::string, std::string>> marked;
  for (const route& r : table().routes()) {
    if (r.may_wait == waits::yes) marked.emplace(r.method, r.pattern);
  }
  EXPECT_EQ(marked, waiting);
}

TEST(RouteTable, CustomTable) {
  route_table t;
  t.add("GET", "/items", dummy);
  t.add("POST", "/items", other, waits::yes);
  t.add("GET", "/items/{id}", dummy);
  t.add("POST", "/items/new", other);
  t.add("GET", "/a/{x}/b/{y}", dummy);
  t.add("GET", "/", dummy);
  ASSERT_EQ(t.routes().size(), 6u);
  EXPECT_EQ(t.routes()[0].may_wait, waits::no);
  EXPECT_EQ(t.routes()[1].may_wait, waits::yes);
  EXPECT_EQ(t.routes()[1].handle, &other);

  const routing post = t.find("POST", "/items");
  ASSERT_EQ(post.matched, &t.routes()[1]);
  EXPECT_EQ(post.matched->handle, &other);

  const routing two = t.find("GET", "/a/1/b/two%2F2");
  ASSERT_EQ(two.matched, &t.routes()[4]);
  EXPECT_EQ(two.match.path_params, (std::vector<std::string>{"1", "two/2"}));

  const routing root = t.find("GET", "/");
  ASSERT_EQ(root.matched, &t.routes()[5]);
  EXPECT_TRUE(root.match.path_params.empty());

  // The literal /items/new shadows /items/{id}, whatever the order they were added in.
  EXPECT_EQ(t.find("POST", "/items/new").matched, &t.routes()[3]);
  EXPECT_EQ(t.find("GET", "/items/new").allow, "POST");
  EXPECT_EQ(t.find("GET", "/items/old").matched, &t.routes()[2]);
  EXPECT_EQ(t.find("DELETE", "/items").allow, "GET, POST");
  EXPECT_EQ(t.find("GET", "/a/1/b").matched, nullptr);
  EXPECT_TRUE(t.find("GET", "/a/1/b").allow.empty());
}

TEST(RouteTable, DuplicateRouteThrows) {
  route_table t;
  t.add("GET", "/items/{id}", dummy);
  EXPECT_THROW(t.add("GET", "/items/{id}", other), std::logic_error);
  EXPECT_THROW(t.add("GET", "/items/{id}", dummy, waits::yes), std::logic_error);
  EXPECT_NO_THROW(t.add("DELETE", "/items/{id}", dummy));
  EXPECT_NO_THROW(t.add("GET", "/items/{name}", dummy));  // another pattern text
  EXPECT_EQ(t.routes().size(), 3u);

  try {
    t.add("DELETE", "/items/{id}", dummy);
    FAIL() << "no exception";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "route added twice: DELETE /items/{id}");
  }
}

TEST(RouteTable, EmptyTableFindsNothing) {
  const route_table t;
  const routing r = t.find("GET", "/anything?x=1");
  EXPECT_EQ(r.matched, nullptr);
  EXPECT_TRUE(r.allow.empty());
  EXPECT_FALSE(r.bad_target);
  EXPECT_EQ(r.match.query, (query_list{{"x", "1"}}));
}

TEST(RouteTable, ApiRoutesAreBuiltTheSameEachTime) {
  const route_table a = api_routes();
  const route_table b = api_routes();
  ASSERT_EQ(a.routes().size(), b.routes().size());
  for (std::size_t i = 0; i < a.routes().size(); ++i) {
    EXPECT_EQ(a.routes()[i].method, b.routes()[i].method);
    EXPECT_EQ(a.routes()[i].pattern, b.routes()[i].pattern);
    EXPECT_EQ(a.routes()[i].handle, b.routes()[i].handle);
  }
}

}  // namespace
}  // namespace gatherd::service
