#include "service/http/problem.hpp"

#include <algorithm>
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
                               const std::string& detail,
                               std::optional<std::chrono::milliseconds> retry_after) {
  nlohmann::json doc = {{"type", "urn:gatherd:" + code},
                        {"title", title_of(status)},
                        {"status", status},
                        {"detail", detail},
                        {"code", code}};
  http_response res;
  res.status = status;
  res.content_type = "application/problem+json";
  res.body = to_json_text(doc);
  if (status == 429 || status == 503) res.retry_after = retry_after.value_or(std::chrono::seconds(1));
  if (status == 401) res.headers.emplace_back("WWW-Authenticate", "Bearer");
  return res;
}

std::string retry_after_seconds(std::chrono::milliseconds after, std::chrono::milliseconds max) {
  const auto up = [](std::chrono::milliseconds d) { return (d.count() + 999) / 1000; };
  return std::to_string(std::clamp<std::int64_t>(up(after), 1, std::max<std::int64_t>(1, up(max))));
}

http_response problem_from(std::exception_ptr error) {
  using core::engine_errc;
  try {
    std::rethrow_exception(error);
  } catch (const request_error& e) {
    return problem_response(e.status(), e.code(), e.what(), e.retry_after());
  } catch (const core::engine_error& e) {
    switch (e.code()) {
      case engine_errc::queue_full:
        return problem_response(429, "queue_full", e.what(), e.retry_after());
      case engine_errc::not_found:
        return problem_response(404, "not_found", e.what());
      case engine_errc::already_finished:
        return problem_response(409, "already_finished", e.what());
      case engine_errc::idempotency_conflict:
        return problem_response(409, "idempotency_conflict", e.what());
      case engine_errc::shutting_down:
        return problem_response(503, "shutting_down", e.what());
      case engine_errc::job_too_large:
        return problem_response(413, "job_too_large", e.what());
      case engine_errc::jobs_memory_full:
        return problem_response(429, "jobs_memory_full", e.what(), e.retry_after());
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
        return problem_response(429, "too_many_waiters", e.what(), e.retry_after());
      case primitive_errc::too_many_primitives:
        return problem_response(429, "too_many_primitives", e.what(), e.retry_after());
      case primitive_errc::queue_full:
        return problem_response(429, "queue_full", e.what(), e.retry_after());
      case primitive_errc::invalid:
        return problem_response(400, "invalid_request", e.what());
      case primitive_errc::item_too_large:
        return problem_response(413, "item_too_large", e.what());
      case primitive_errc::queue_bytes_full:
        return problem_response(429, "queue_bytes_full", e.what(), e.retry_after());
      case primitive_errc::queues_memory_full:
        return problem_response(429, "queues_memory_full", e.what(), e.retry_after());
    }
  } catch (const std::exception& e) {
    return problem_response(500, "internal", e.what());
  } catch (...) {  // not a std::exception: still an answer, never an escape from the pipeline
  }
  return problem_response(500, "internal", "unknown error");
}

}  // namespace gatherd::service
