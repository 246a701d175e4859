#include "service/http/problem.hpp"

#include <nlohmann/json.hpp>

#include "libcore/engine_error.hpp"
#include "libcore/primitives/primitive_error.hpp"
#include "service/codec/json_text.hpp"

namespace gatherd::service {

namespace {

std::string_view title_of(unsigned status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 499:
      return "Client Closed Request";
    case 503:
      return "Service Unavailable";
    default:
      return "Internal Server Error";
  }
}

}  // namespace

http_response problem_response(unsigned status, const std::string& code,
                               const std::string& detail) {
  nlohmann::json doc = {{"type", "urn:gatherd:" + code},
                        {"title", title_of(status)},
                        {"status", status},
                        {"detail", detail},
                        {"code", code}};
  http_response res;
  res.status = status;
  res.content_type = "application/problem+json";
  res.body = to_json_text(doc);
  if (status == 429 || status == 503) res.headers.emplace_back("Retry-After", "1");
  if (status == 401) res.headers.emplace_back("WWW-Authenticate", "Bearer");
  return res;
}

http_response problem_from(std::exception_ptr error) {
  using core::engine_errc;
  try {
    std::rethrow_exception(error);
  } catch (const request_error& e) {
    return problem_response(e.status(), e.code(), e.what());
  } catch (const core::engine_error& e) {
    switch (e.code()) {
      case engine_errc::queue_full:
        return problem_response(429, "queue_full", e.what());
      case engine_errc::not_found:
        return problem_response(404, "not_found", e.what());
      case engine_errc::already_finished:
        return problem_response(409, "already_finished", e.what());
      case engine_errc::idempotency_conflict:
        return problem_response(409, "idempotency_conflict", e.what());
      case engine_errc::shutting_down:
        return problem_response(503, "shutting_down", e.what());
    }
  } catch (const core::primitive_error& e) {
    using core::primitive_errc;
    switch (e.code()) {
      case primitive_errc::not_found:
        return problem_response(404, "not_found", e.what());
      case primitive_errc::not_held:
        return problem_response(409, "not_held", e.what());
      case primitive_errc::acquire_timeout:
        return problem_response(408, "acquire_timeout", e.what());
      case primitive_errc::wait_timeout:
        return problem_response(408, "wait_timeout", e.what());
      case primitive_errc::too_many_waiters:
        return problem_response(429, "too_many_waiters", e.what());
      case primitive_errc::too_many_primitives:
        return problem_response(429, "too_many_primitives", e.what());
      case primitive_errc::queue_full:
        return problem_response(429, "queue_full", e.what());
      case primitive_errc::invalid:
        return problem_response(400, "invalid_request", e.what());
    }
  } catch (const std::exception& e) {
    return problem_response(500, "internal", e.what());
  } catch (...) {  // not a std::exception: still an answer, never an escape from the pipeline
  }
  return problem_response(500, "internal", "unknown error");
}

}  // namespace gatherd::service
