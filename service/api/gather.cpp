// POST /v1/gather: fan-in over existing jobs and inline specs, answered as one document or
// streamed (as_completed).
#include "service/api/gather.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/this_coro.hpp>

#include "libcore/job_record.hpp"
#include "service/api/context.hpp"
#include "service/api/routes.hpp"
#include "service/codec/gather_codec.hpp"
#include "service/codec/gather_encoder.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/query_reader.hpp"
#include "service/http/problem.hpp"
#include "service/telemetry/log.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

void record_gather(api_context& api, const core::gather_result& result, std::size_t count,
                   const std::string& request_id) {
  const auto outcome = core::to_string(result.outcome);
  api.meter.gather_done(outcome, std::chrono::duration<double>(result.elapsed).count());
  log::info("gather.done")
      .add("request_id", request_id)
      .add("outcome", outcome)
      .add("jobs", count)
      .add("done", result.done.size())
      .add("pending", result.pending.size())
      .add("elapsed_ms", static_cast<std::int64_t>(result.elapsed.count()));
}

// What a streamed gather tells its pump, in order: started (or failed before anything was
// reported), one event per job done, the summary.
struct gather_event {
  enum class kind { started, job, summary, failed } what = kind::job;
  std::shared_ptr<const core::job_record> job;  // final: readable on any thread
  std::shared_ptr<const core::gather_result> result;
  std::exception_ptr error;
};

}  // namespace

// The events of one streamed gather, from the gather's coroutine to its pump. If the pump
// stops early (its receiver went away, it was cancelled), it abandons the gather through `stop`.
class gather_stream {
 public:
  gather_stream(net::any_io_executor ex, std::size_t capacity) : events(std::move(ex), capacity) {}
  void send(gather_event e) {
    events.try_send(boost::system::error_code{}, std::move(e));  // sized to never be full
  }
  void abandon() {
    if (!ended) stop.emit(net::cancellation_type::terminal);
  }
  net::experimental::concurrent_channel<void(boost::system::error_code, gather_event)> events;
  net::cancellation_signal stop;
  bool ended = false;  // the gather's coroutine is over: nothing left to stop
};

namespace {

// Abandons the gather unless the whole stream was passed on.
struct abandon_unless_done {
  gather_stream& stream;
  bool done = false;
  ~abandon_unless_done() {
    if (!done) stream.abandon();
  }
};

// Runs one streamed gather beside its pump, feeding it events.
core::awaitable<void> run_streamed(api_context& api, gather_request request,
                                   std::shared_ptr<gather_stream> stream, std::string request_id) {
  core::gather_progress progress;
  progress.started = [stream] { stream->send({gather_event::kind::started, {}, {}, {}}); };
  progress.done = [stream](std::size_t, const std::shared_ptr<const core::job_record>& job) {
    stream->send({gather_event::kind::job, job, {}, {}});
  };
  try {
    const std::size_t count = request.entries.size();
    auto result = std::make_shared<const core::gather_result>(co_await api.engine.gather(
        std::move(request.entries), request.options, std::move(progress)));
    record_gather(api, *result, count, request_id);
    stream->send({gather_event::kind::summary, {}, std::move(result), {}});
  } catch (...) {
    stream->send({gather_event::kind::failed, {}, {}, std::current_exception()});
  }
  stream->ended = true;
}

// as_completed over HTTP: one job per line as each is done, then {"summary": {...}}.
class ndjson_lines : public gather_sink {
 public:
  explicit ndjson_lines(body_writer& out) : out_(out) {}
  core::awaitable<bool> job_done(const core::job_snapshot& job) override {
    fmt::memory_buffer line;
    write_job(line, job);
    line.push_back('\n');
    co_return co_await out_.write(fmt::to_string(line));
  }
  core::awaitable<bool> finished(const core::gather_result& result) override {
    fmt::memory_buffer line;
    line.append(std::string_view(R"({"summary":{)"));
    write_gather_summary_fields(line, result);
    line.append(std::string_view("}}\n"));
    co_return co_await out_.write(fmt::to_string(line));
  }

 private:
  body_writer& out_;
};

core::awaitable<http_response> post_gather(api_context& api, const http_request& req,
                                           const route_match& match) {
  query_reader(match.query).finish();
  require_json_body(req);
  const auto document = std::make_shared<const json>(parse_json_body(req.body));
  gather_request request = co_await read_gather(api, *document);

  if (wants_ndjson(req)) {
    // Refusals (404, 429, ...) still come as problem documents: the head is written only once
    // the gather started.
    auto stream = co_await start_gather_stream(api, std::move(request), req.request_id);
    http_response res;
    res.content_type = "application/x-ndjson";
    res.stream = [stream](body_writer& out) -> core::awaitable<void> {
      ndjson_lines lines(out);
      co_await pump(stream, lines);
    };
    co_return res;
  }

  const std::size_t count = request.entries.size();
  // A large gather's answer is written while its jobs finish, on the last I/O thread.
  const auto encoder = std::make_shared<gather_encoder>(api.io.back(), count);
  core::gather_result gathered =
      co_await api.engine.gather(std::move(request.entries), request.options, encoder->progress());
  const auto kept = std::make_shared<const core::gather_result>(std::move(gathered));
  const core::gather_result& result = *kept;
  record_gather(api, result, count, req.request_id);

  // Written straight into the body (3 MB for 10,000 jobs: one copy, not two).
  std::string text;
  text.reserve(result.jobs.size() * 320 + 256);  // a job object is ~310 bytes: no regrowth
  text.append(R"({"jobs":[)");
  co_await encoder->write_jobs(text, result.jobs);
  fmt::memory_buffer tail;
  tail.append(std::string_view("],"));
  write_gather_summary_fields(tail, result);
  tail.push_back('}');
  text.append(tail.data(), tail.size());
  http_response res;
  res.body = std::move(text);
  res.release_after_write = {document, kept, encoder};  // 10,000 jobs take ms to free
  co_return res;
}

}  // namespace

core::awaitable<gather_request> read_gather(api_context& api, const json& body) {
  object_reader r(body, "",
                  {"jobs", "return_when", "return_exceptions", "cancel_on_error", "cancel_pending",
                   "timeout_ms"});
  const json* jobs = r.raw("jobs");
  const std::size_t max = api.settings.max_gather;
  if (!jobs || !jobs->is_array() || jobs->empty() || jobs->size() > max) {
    throw invalid_request("field 'jobs' must be an array of 1 to " + std::to_string(max) +
                          " job ids or job specs");
  }
  gather_request request;
  request.entries.resize(jobs->size());
  const std::function<void(std::size_t, std::size_t)> read_entries = [&](std::size_t begin,
                                                                         std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      request.entries[i] = parse_gather_entry((*jobs)[i], i, api.limits);
    }
  };  // (named: g++ 12 destroys a temporary in a co_await's arguments twice)
  co_await api.in_two_halves(jobs->size(), read_entries);
  request.options = parse_gather_options(r);
  co_return request;
}

core::awaitable<std::shared_ptr<gather_stream>> start_gather_stream(api_context& api,
                                                                    gather_request request,
                                                                    std::string request_id) {
  const auto ex = co_await net::this_coro::executor;
  auto stream = std::make_shared<gather_stream>(ex, request.entries.size() + 4);
  net::co_spawn(ex, run_streamed(api, std::move(request), stream, std::move(request_id)),
                net::bind_cancellation_slot(stream->stop.slot(), net::detached));
  abandon_unless_done waiting{*stream};  // we may be cancelled before it starts
  auto [ec, first] = co_await stream->events.async_receive(net::as_tuple(net::use_awaitable));
  if (ec) throw boost::system::system_error(ec);
  waiting.done = true;
  if (first.what == gather_event::kind::failed) std::rethrow_exception(first.error);
  co_return stream;
}

core::awaitable<void> pump(std::shared_ptr<gather_stream> stream, gather_sink& sink) {
  abandon_unless_done pumping{*stream};
  for (;;) {
    auto [ec, e] = co_await stream->events.async_receive(net::as_tuple(net::use_awaitable));
    if (ec) co_return;  // cancelled: the receiver is gone
    if (e.what == gather_event::kind::job) {
      if (!co_await sink.job_done(e.job->snapshot())) co_return;
    } else if (e.what == gather_event::kind::summary) {
      if (!co_await sink.finished(*e.result)) co_return;
      break;
    } else {
      break;  // (failed after start cannot happen: the gather reports its own outcome)
    }
  }
  pumping.done = true;
}

void add_gather_routes(route_table& t) {
  t.add("POST", "/v1/gather", post_gather, waits::yes);
}

}  // namespace gatherd::service
