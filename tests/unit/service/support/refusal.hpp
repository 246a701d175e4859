// Checks of what a codec refuses: the request_error (status, problem code, message) it throws.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "service/http/problem.hpp"

namespace gatherd::service::test {

// Runs `f`, which must throw request_error; returns it.
template <class F>
request_error refusal(F&& f) {
  try {
    f();
  } catch (const request_error& e) {
    return e;
  }
  ADD_FAILURE() << "no request_error thrown";
  return request_error(0, "", "");
}

// `f` throws a request_error with exactly this status, code and message.
template <class F>
void expect_error(F&& f, unsigned status, const std::string& code, const std::string& message) {
  const request_error e = refusal(std::forward<F>(f));
  EXPECT_EQ(e.status(), status);
  EXPECT_EQ(e.code(), code);
  EXPECT_EQ(std::string(e.what()), message);
}

// `f` throws a 400 invalid_request with exactly `message`.
template <class F>
void expect_400(F&& f, const std::string& message) {
  expect_error(std::forward<F>(f), 400, "invalid_request", message);
}

}  // namespace gatherd::service::test
