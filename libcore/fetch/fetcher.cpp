#include "libcore/fetch/fetcher.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <ctime>

#include "libcore/backend_error.hpp"
#include "libcore/fetch/url.hpp"

namespace gatherd::core::fetch {

namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string status_class(unsigned status) {
  return std::to_string(std::min(status / 100, 9u)) + "xx";
}

double seconds(steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

bool retryable_status(unsigned status) {
  return status == 429 || (status >= 500 && status <= 599);
}

std::string exhausted_message(unsigned status, int attempts) {
  return "the server answered " + std::to_string(status) + " to the last of " +
         std::to_string(attempts) + (attempts == 1 ? " attempt" : " attempts");
}

bool retryable_error(std::string_view type) {
  return type == "connect" || type == "timeout";
}

std::optional<millis> retry_after(const header_list& headers) {
  for (const auto& [name, value] : headers) {
    if (lower(name) != "retry-after") continue;
    std::int64_t delay = 0;
    const char* end = value.data() + value.size();
    auto [ptr, ec] = std::from_chars(value.data(), end, delay);
    const bool digits = !value.empty() && value[0] >= '0' && value[0] <= '9';  // delta-seconds
    if (digits && ptr == end && (ec == std::errc{} || ec == std::errc::result_out_of_range)) {
      if (ec != std::errc{}) delay = 86400;  // digits past 2^63: a day, as any long wait
      return millis{std::min<std::int64_t>(delay, 86400) * 1000};
    }
    std::tm tm{};  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    if (const char* rest = strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        rest == end) {  // the whole value: not a date followed by a NUL and more
      // In whole seconds: a date in year 9999 is past what nanoseconds since 1970 can hold.
      const std::int64_t wait_s = static_cast<std::int64_t>(timegm(&tm)) -
                                  static_cast<std::int64_t>(wall_clock::to_time_t(wall_clock::now()));
      return millis{std::clamp<std::int64_t>(wait_s, 0, 86400) * 1000};
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<origin_key> origin_of(std::string_view url) {
  auto parsed = try_parse_fetch_url(url);
  if (!parsed) return std::nullopt;
  return origin_key{std::move(parsed->host), std::move(parsed->host_port)};
}

fetcher::fetcher(http_client& client, rate_limiter& hosts, fetch_settings settings,
                 std::vector<executor> io, fetch_observer* observer)
    : client_(client),
      hosts_(hosts),
      settings_(std::move(settings)),
      io_(std::move(io)),
      observer_(observer ? observer : &null_observer_) {
  if (io_.empty()) throw std::invalid_argument("a fetcher needs at least one I/O executor");
}

std::optional<rate> fetcher::host_limit(const std::string& host,
                                        const std::string& host_port) const {
  if (auto it = settings_.host_rates.find(host_port); it != settings_.host_rates.end()) {
    return it->second;
  }
  if (auto it = settings_.host_rates.find(host); it != settings_.host_rates.end()) {
    return it->second;
  }
  return settings_.host_rate;
}

awaitable<attempt_outcome> fetcher::attempt(http_request request, const batch_limit* batch) {
  attempt_outcome out;
  // Without any limit in force the URL is left to the client to parse (once per attempt).
  const bool limited =
      (batch && batch->limiter) || settings_.host_rate || !settings_.host_rates.empty();
  const auto origin = limited ? origin_of(request.url) : std::nullopt;
  if (origin) {  // an unusable URL is the client's to report
    if (batch && batch->limiter) {
      // (the key in a local: g++ 12 destroys a temporary of a ?: inside co_await twice)
      std::string key = batch->per_host ? origin->host_port : std::string();
      out.throttled += co_await batch->limiter->acquire(std::move(key), batch->limit);
    }
    if (auto limit = host_limit(origin->host, origin->host_port)) {
      try {
        out.throttled += co_await hosts_.acquire(origin->host_port, *limit);
      } catch (const backend_unavailable& e) {  // the shared limit is unknown: nothing is sent
        observer_->attempt_done("backend_unavailable", 0.0);
        out.error = job_error{"backend_unavailable", e.what()};
        co_return out;
      }
    }
    if (out.throttled.count() > 0) observer_->throttled(seconds(out.throttled));
  }
  const auto started = steady_clock::now();
  try {
    http_response response = co_await client_.send(std::move(request));
    observer_->attempt_done(status_class(response.status), seconds(steady_clock::now() - started));
    out.response = std::move(response);
  } catch (const fetch_error& e) {
    observer_->attempt_done(e.type(), seconds(steady_clock::now() - started));
    out.error = job_error{e.type(), e.what()};
  }
  co_return out;
}

awaitable<fetch_result> fetcher::fetch_with_retries(
    const http_request& request, const retry_policy& policy,
    std::optional<steady_clock::time_point> deadline, const batch_limit* batch,
    std::mt19937_64& rng) {
  fetch_result result;
  result.url = request.url;
  const auto started = steady_clock::now();
  for (;;) {
    ++result.attempts;
    attempt_outcome a = co_await attempt(request, batch);
    result.throttled += a.throttled;
    bool retry = result.attempts < policy.max_attempts &&
                 (a.error ? retryable_error(a.error->type) : retryable_status(a.response->status));
    millis wait{0};
    if (retry) {
      wait = policy.backoff(result.attempts, rng);
      if (a.response) {
        if (auto after = retry_after(a.response->headers)) wait = std::max(wait, *after);
      }
      // A retry that could only start after the deadline is not made: the last answer stands.
      if (deadline && steady_clock::now() + wait >= *deadline) retry = false;
    }
    if (!retry) {
      if (a.response) {
        // Retries were asked for and this status is one they retry: ending on it is a failure,
        // not a result (the status stays readable beside the error).
        if (policy.max_attempts > 1 && retryable_status(a.response->status)) {
          result.error = job_error{"http_status", exhausted_message(a.response->status,
                                                                    result.attempts)};
        }
        result.status = a.response->status;
        result.headers = std::move(a.response->headers);
        result.body = std::move(a.response->body);
        result.truncated = a.response->truncated;
      } else {
        result.error = std::move(a.error);
      }
      break;
    }
    observer_->retrying();
    net::steady_timer backoff(co_await net::this_coro::executor, wait);
    co_await backoff.async_wait(net::use_awaitable);
  }
  result.elapsed = std::chrono::duration_cast<millis>(steady_clock::now() - started);
  co_return result;
}

}  // namespace gatherd::core::fetch
