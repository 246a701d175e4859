#include "service/api/context.hpp"

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>

#include "service/codec/json_text.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

spec_limits spec_limits_of(const config& c) {
  spec_limits l;
  l.max_retention = c.max_retention;
  l.fetch.default_timeout = c.fetch_timeout;
  l.fetch.default_body_bytes = c.fetch_default_body_bytes;
  l.fetch.max_body_bytes = c.fetch_max_body_bytes;
  l.fetch.max_redirects = c.fetch_max_redirects;
  l.fetch.max_requests = c.fetch_max_requests;
  l.fetch.max_concurrency = c.fetch_max_concurrency;
  return l;
}

}  // namespace

api_context::api_context(const config& c, core::engine& e, core::coordinator& co,
                         core::fetch::fetcher& f, metrics& m, fetch_metrics& fm,
                         std::vector<net::any_io_executor> io_executors)
    : settings(c),
      engine(e),
      coordinator(co),
      fetcher(f),
      meter(m),
      fetch_meter(fm),
      io(std::move(io_executors)),
      limits(spec_limits_of(c)) {}

core::awaitable<void> api_context::in_two_halves(
    std::size_t n, const std::function<void(std::size_t, std::size_t)>& work) const {
  constexpr std::size_t split_from = 1024;  // below this, the hops cost more than they save
  const auto mine = co_await net::this_coro::executor;
  const auto other = std::find_if(io.begin(), io.end(), [&](const auto& ex) { return ex != mine; });
  if (n < split_from || other == io.end()) {
    work(0, n);
    co_return;
  }
  const std::size_t half = n / 2;
  // (named, not temporaries in the co_await: g++ 12 destroys those twice)
  auto first = [&]() -> core::awaitable<void> {
    work(0, half);
    co_return;
  };
  auto second = [&]() -> core::awaitable<void> {
    work(half, n);
    co_return;
  };
  auto both = net::experimental::make_parallel_group(net::co_spawn(mine, first, net::deferred),
                                                     net::co_spawn(*other, second, net::deferred));
  auto [order, first_error, second_error] =
      co_await std::move(both).async_wait(net::experimental::wait_for_all(), net::use_awaitable);
  if (first_error) std::rethrow_exception(first_error);
  if (second_error) std::rethrow_exception(second_error);
}

http_response json_response(unsigned status, const nlohmann::json& body) {
  return text_response(status, to_json_text(body));
}

http_response text_response(unsigned status, std::string body) {
  http_response res;
  res.status = status;
  res.body = std::move(body);
  return res;
}

http_response no_content() {
  http_response res;
  res.status = 204;
  res.content_type.clear();
  return res;
}

bool wants_ndjson(const http_request& req) {
  return req.accept.find("application/x-ndjson") != std::string::npos;
}

}  // namespace gatherd::service
