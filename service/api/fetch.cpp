// POST /v1/fetch: a rate-limited batch of outbound requests, answered as one JSON document,
// streamed as NDJSON in completion order, or run as a `fetch_batch` job (`async: true`).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include "libcore/fetch/batch.hpp"
#include "service/api/context.hpp"
#include "service/api/jobs.hpp"
#include "service/api/routes.hpp"
#include "service/codec/fetch_codec.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"
#include "service/telemetry/log.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

using batch_mode = fetch_metrics::batch_mode;

std::string_view mode_name(batch_mode mode) {
  return mode == batch_mode::json ? "json" : mode == batch_mode::stream ? "stream" : "async";
}

void record_fetch_batch(const core::fetch::batch_summary& summary, std::size_t count,
                        batch_mode mode, const std::string& request_id) {
  log::info("fetch.batch")
      .add("request_id", request_id)
      .add("mode", mode_name(mode))
      .add("requests", count)
      .add("ok", summary.ok)
      .add("failed", summary.failed)
      .add("elapsed_ms", static_cast<std::int64_t>(summary.elapsed.count()))
      .add("throttled_ms", static_cast<std::int64_t>(summary.throttled.count()));
}

core::awaitable<http_response> post_fetch(api_context& api, const http_request& req,
                                          const route_match& match) {
  query_reader(match.query).finish();
  require_json_body(req);
  fetch_batch_request parsed = parse_fetch_batch(parse_json_body(req.body), api.limits.fetch);
  const std::size_t count = parsed.batch.requests.size();

  if (parsed.async) {
    core::job_spec spec;
    spec.params = core::fetch_batch_params(std::move(parsed.batch));
    http_response res = co_await submit_job(api, std::move(spec));
    api.fetch_meter.batch_started(batch_mode::async);  // admitted
    co_return res;
  }

  if (wants_ndjson(req)) {
    api.fetch_meter.batch_started(batch_mode::stream);
    auto batch = std::make_shared<core::fetch::batch_params>(std::move(parsed.batch));
    http_response res;
    res.content_type = "application/x-ndjson";
    res.stream = [&api, batch, count,
                  id = req.request_id](body_writer& out) -> core::awaitable<void> {
      using namespace net::experimental::awaitable_operators;
      // Lines go from the batch to the writer through a channel that can hold every line, so
      // the batch never waits for the client; a client that leaves cancels the batch. The
      // batch's workers run on several threads: the channel is the thread-safe kind, and each
      // line is encoded on the thread that finished its request.
      net::experimental::concurrent_channel<void(boost::system::error_code, std::string)> lines(
          co_await net::this_coro::executor, count + 2);
      auto progress = [&lines](std::size_t index, const core::fetch::fetch_result& r) {
        lines.try_send(boost::system::error_code{}, encode_fetch_line(r, index));
      };
      auto produce = [&]() -> core::awaitable<void> {
        auto outcome = co_await core::fetch::run_batch(api.fetcher, std::move(*batch), progress);
        record_fetch_batch(outcome.summary, count, batch_mode::stream, id);
        lines.try_send(boost::system::error_code{}, encode_fetch_summary_line(outcome.summary));
        lines.try_send(boost::system::error_code{}, std::string{});  // the end
      };
      auto consume = [&]() -> core::awaitable<void> {
        for (;;) {
          auto [ec, line] = co_await lines.async_receive(net::as_tuple(net::use_awaitable));
          if (ec || line.empty()) co_return;
          if (!co_await out.write(std::move(line))) {  // the client is gone: stop the batch
            throw boost::system::system_error(net::error::operation_aborted);
          }
        }
      };
      co_await (produce() && consume());
    };
    co_return res;
  }

  api.fetch_meter.batch_started(batch_mode::json);
  core::fetch::batch_outcome fetched =
      co_await core::fetch::run_batch(api.fetcher, std::move(parsed.batch));
  const auto outcome = std::make_shared<const core::fetch::batch_outcome>(std::move(fetched));
  record_fetch_batch(outcome->summary, count, batch_mode::json, req.request_id);
  http_response res;
  res.body = encode_fetch_batch(*outcome);
  res.release_after_write = {outcome};  // thousands of results take a while to free
  co_return res;
}

}  // namespace

void add_fetch_routes(route_table& t) {
  t.add("POST", "/v1/fetch", post_fetch, waits::yes);
}

}  // namespace gatherd::service
