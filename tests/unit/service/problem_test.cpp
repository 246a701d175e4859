// RFC 9457 problem documents: what every error a handler throws becomes (service/http/problem).
#include "service/http/problem.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

#include "libcore/engine_error.hpp"
#include "libcore/primitives/primitive_error.hpp"

namespace gatherd::service {
namespace {

using nlohmann::json;

std::optional<std::string> header(const http_response& res, std::string_view name) {
  for (const auto& [k, v] : res.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

template <class Error>
http_response from(const Error& error) {
  return problem_from(std::make_exception_ptr(error));
}

// The response is a complete problem document for (status, code, detail).
void expect_problem(const http_response& res, unsigned status, const std::string& code,
                    const std::string& title, const std::string& detail) {
  EXPECT_EQ(res.status, status);
  EXPECT_EQ(res.content_type, "application/problem+json");
  EXPECT_FALSE(res.stream);
  const json body = json::parse(res.body);
  EXPECT_EQ(body, (json{{"type", "urn:gatherd:" + code},
                        {"title", title},
                        {"status", status},
                        {"detail", detail},
                        {"code", code}}))
      << res.body;
  EXPECT_EQ(res.retry_after, status == 429 || status == 503
                                ? std::optional<std::chrono::milliseconds>(std::chrono::seconds(1))
                                : std::nullopt);
  EXPECT_EQ(header(res, "WWW-Authenticate"),
            status == 401 ? std::optional<std::string>("Bearer") : std::nullopt);
}

TEST(Problem, EngineErrors) {
  using core::engine_errc;
  using core::engine_error;
  expect_problem(from(engine_error(engine_errc::queue_full, "the queue is full")), 429,
                 "queue_full", "Too Many Requests", "the queue is full");
  expect_problem(from(engine_error(engine_errc::not_found, "no job abc")), 404, "not_found",
                 "Not Found", "no job abc");
  expect_problem(from(engine_error(engine_errc::already_finished, "done")), 409, "already_finished",
                 "Conflict", "done");
  expect_problem(from(engine_error(engine_errc::idempotency_conflict, "other spec")), 409,
                 "idempotency_conflict", "Conflict", "other spec");
  expect_problem(from(engine_error(engine_errc::shutting_down, "bye")), 503, "shutting_down",
                 "Service Unavailable", "bye");
  expect_problem(from(engine_error(engine_errc::job_too_large, "big")), 413, "job_too_large",
                 "Content Too Large", "big");
  expect_problem(from(engine_error(engine_errc::jobs_memory_full, "full")), 429,
                 "jobs_memory_full", "Too Many Requests", "full");
}

TEST(Problem, PrimitiveErrors) {
  using core::primitive_errc;
  using core::primitive_error;
  expect_problem(from(primitive_error(primitive_errc::not_found, "no semaphore s")), 404,
                 "not_found", "Not Found", "no semaphore s");
  expect_problem(from(primitive_error(primitive_errc::not_held, "permit p")), 409, "not_held",
                 "Conflict", "permit p");
  expect_problem(from(primitive_error(primitive_errc::acquire_timeout, "t1")), 408,
                 "acquire_timeout", "Request Timeout", "t1");
  expect_problem(from(primitive_error(primitive_errc::wait_timeout, "t2")), 408, "wait_timeout",
                 "Request Timeout", "t2");
  expect_problem(from(primitive_error(primitive_errc::too_many_waiters, "w")), 429,
                 "too_many_waiters", "Too Many Requests", "w");
  expect_problem(from(primitive_error(primitive_errc::too_many_primitives, "p")), 429,
                 "too_many_primitives", "Too Many Requests", "p");
  expect_problem(from(primitive_error(primitive_errc::queue_full, "q")), 429, "queue_full",
                 "Too Many Requests", "q");
  expect_problem(from(primitive_error(primitive_errc::item_too_large, "i")), 413, "item_too_large",
                 "Content Too Large", "i");
  expect_problem(from(primitive_error(primitive_errc::queue_bytes_full, "b")), 429,
                 "queue_bytes_full", "Too Many Requests", "b");
  expect_problem(from(primitive_error(primitive_errc::queues_memory_full, "m")), 429,
                 "queues_memory_full", "Too Many Requests", "m");
  expect_problem(from(primitive_error(primitive_errc::invalid, "permits must be positive")), 400,
                 "invalid_request", "Bad Request", "permits must be positive");
}

TEST(Problem, RequestErrors) {
  expect_problem(from(invalid_request("field 'kind' is required")), 400, "invalid_request",
                 "Bad Request", "field 'kind' is required");
  expect_problem(from(request_error(401, "unauthorized", "a bearer token is required")), 401,
                 "unauthorized", "Unauthorized", "a bearer token is required");
  expect_problem(from(request_error(404, "not_found", "no job x (jobs[3])")), 404, "not_found",
                 "Not Found", "no job x (jobs[3])");
  expect_problem(from(request_error(405, "method_not_allowed", "m")), 405, "method_not_allowed",
                 "Method Not Allowed", "m");
  expect_problem(from(request_error(413, "body_too_large", "b")), 413, "body_too_large",
                 "Content Too Large", "b");
  expect_problem(from(request_error(415, "unsupported_media_type", "u")), 415,
                 "unsupported_media_type", "Unsupported Media Type", "u");
  expect_problem(from(request_error(426, "upgrade_required", "w")), 426, "upgrade_required",
                 "Upgrade Required", "w");
  expect_problem(from(request_error(429, "too_many_websockets", "t")), 429, "too_many_websockets",
                 "Too Many Requests", "t");
  expect_problem(from(request_error(431, "headers_too_large", "h")), 431, "headers_too_large",
                 "Request Header Fields Too Large", "h");
  expect_problem(from(request_error(499, "client_closed", "c")), 499, "client_closed",
                 "Client Closed Request", "c");
  expect_problem(from(request_error(503, "not_ready", "r")), 503, "not_ready",
                 "Service Unavailable", "r");
}

TEST(Problem, RequestErrorCarriesStatusAndCode) {
  const request_error e = invalid_request("why");
  EXPECT_EQ(e.status(), 400u);
  EXPECT_EQ(e.code(), "invalid_request");
  EXPECT_STREQ(e.what(), "why");
  const request_error other(415, "unsupported_media_type", "what");
  EXPECT_EQ(other.status(), 415u);
  EXPECT_EQ(other.code(), "unsupported_media_type");
}

TEST(Problem, OtherExceptionsAreInternal) {
  expect_problem(from(std::runtime_error("disk on fire")), 500, "internal", "Internal Server Error",
                 "disk on fire");
  expect_problem(from(std::logic_error("oops")), 500, "internal", "Internal Server Error", "oops");
}

// problem_from is documented to map "anything else" too: an exception that is not a
// std::exception must become a 500 as well, not escape (the pipeline calls it from a catch (...)).
TEST(Problem, NonStandardExceptionIsInternal) {
  for (const std::exception_ptr& error :
       {std::make_exception_ptr(42), std::make_exception_ptr(std::string("text"))}) {
    try {
      expect_problem(problem_from(error), 500, "internal", "Internal Server Error",
                     "unknown error");
    } catch (...) {
      ADD_FAILURE() << "problem_from let an exception that is not a std::exception escape";
    }
  }
}

TEST(Problem, DetailIsEscaped) {
  const std::string detail = "bad \"value\"\n\tin \\ field \x01 \xC3\xA9";
  const http_response res = from(invalid_request(detail));
  expect_problem(res, 400, "invalid_request", "Bad Request", detail);
  EXPECT_EQ(res.body,
            R"({"code":"invalid_request","detail":"bad \"value\"\n\tin \\ field \u0001 )"
            "\xC3\xA9"
            R"(","status":400,"title":"Bad Request","type":"urn:gatherd:invalid_request"})");
}

TEST(Problem, ResponseText) {
  // Keys in nlohmann's (sorted) order, compact.
  const http_response res = problem_response(404, "not_found", "no job abc");
  EXPECT_EQ(res.body,
            R"({"code":"not_found","detail":"no job abc","status":404,"title":"Not Found",)"
            R"("type":"urn:gatherd:not_found"})");
  EXPECT_TRUE(res.headers.empty());
}

TEST(Problem, RetryAfterAndWwwAuthenticate) {
  using std::chrono::milliseconds;
  const http_response busy = problem_response(429, "queue_full", "x");
  EXPECT_EQ(busy.retry_after, milliseconds(1000));  // unknown: 1 s
  EXPECT_EQ(problem_response(429, "queue_full", "x", milliseconds(7300)).retry_after,
            milliseconds(7300));
  const http_response down = problem_response(503, "shutting_down", "x");
  EXPECT_EQ(down.retry_after, milliseconds(1000));
  const http_response auth = problem_response(401, "unauthorized", "x");
  EXPECT_EQ(auth.headers, (header_list{{"WWW-Authenticate", "Bearer"}}));
  EXPECT_FALSE(auth.retry_after);
  for (unsigned status : {400u, 404u, 408u, 409u, 500u}) {
    EXPECT_TRUE(problem_response(status, "c", "d").headers.empty()) << status;
    EXPECT_FALSE(problem_response(status, "c", "d", milliseconds(5)).retry_after) << status;
  }
}

TEST(Problem, RetryAfterIsWholeSecondsWithinBounds) {
  using std::chrono::milliseconds;
  const milliseconds max(30000);
  EXPECT_EQ(retry_after_seconds(milliseconds(0), max), "1");
  EXPECT_EQ(retry_after_seconds(milliseconds(1), max), "1");
  EXPECT_EQ(retry_after_seconds(milliseconds(1000), max), "1");
  EXPECT_EQ(retry_after_seconds(milliseconds(1001), max), "2");
  EXPECT_EQ(retry_after_seconds(milliseconds(29999), max), "30");
  EXPECT_EQ(retry_after_seconds(milliseconds(3600000), max), "30");
  EXPECT_EQ(retry_after_seconds(milliseconds(-5), max), "1");
  EXPECT_EQ(retry_after_seconds(milliseconds(5000), milliseconds(1500)), "2");
}

TEST(Problem, RefusalsCarryTheRefusingStatesRetryAfter) {
  using std::chrono::milliseconds;
  auto from = [](auto error) { return problem_from(std::make_exception_ptr(error)).retry_after; };
  EXPECT_EQ(from(core::engine_error(core::engine_errc::queue_full, "x", milliseconds(4200))),
            milliseconds(4200));
  EXPECT_EQ(from(core::primitive_error(core::primitive_errc::too_many_waiters, "x",
                                       milliseconds(900))),
            milliseconds(900));
  EXPECT_EQ(from(request_error(429, "too_many_connections", "x", milliseconds(2500))),
            milliseconds(2500));
  EXPECT_EQ(from(core::engine_error(core::engine_errc::queue_full, "x")), milliseconds(1000));
}

}  // namespace
}  // namespace gatherd::service
