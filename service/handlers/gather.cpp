// POST /v1/gather: fan-in over existing jobs and inline specs.
#include "libcore/gather.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/this_coro.hpp>

#include "service/handlers/gather_encoder.hpp"
#include "service/http_api.hpp"
#include "service/json_reader.hpp"
#include "service/json_text.hpp"
#include "service/log.hpp"
#include "service/problem.hpp"
#include "service/query_reader.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

core::return_when parse_return_when(const std::string& text) {
  if (text == "all_completed") return core::return_when::all_completed;
  if (text == "first_completed") return core::return_when::first_completed;
  if (text == "first_exception") return core::return_when::first_exception;
  throw invalid_request(
      "field 'return_when' must be one of all_completed, first_completed, first_exception");
}

// jobs[i]: an existing job's id (malformed: 404, as unknown ones are) or an inline spec.
core::gather_entry read_entry(const json& entry, std::size_t i, const spec_limits& limits) {
  const std::string path = "jobs[" + std::to_string(i) + "]";
  if (entry.is_string()) {
    auto id = core::job_id::parse(entry.get_ref<const std::string&>());
    if (!id) {
      throw request_error(404, "not_found",
                          "no job " + entry.get<std::string>() + " (" + path + ")");
    }
    return *id;
  }
  if (entry.is_object()) return parse_job_spec(entry, limits, path);
  throw invalid_request("field '" + path + "' must be a job id (string) or a job spec (object)");
}

void write_indices(fmt::memory_buffer& out, const std::vector<std::size_t>& indices) {
  out.push_back('[');
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (i) out.push_back(',');
    fmt::format_to(std::back_inserter(out), "{}", indices[i]);
  }
  out.push_back(']');
}

// Everything of the answer but `jobs`: the tail of the JSON answer and the NDJSON summary.
void write_summary_fields(fmt::memory_buffer& out, const core::gather_result& result) {
  fmt::format_to(std::back_inserter(out), R"("outcome":"{}","elapsed_ms":{},"done":)",
                 core::to_string(result.outcome), result.elapsed.count());
  write_indices(out, result.done);
  out.append(std::string_view(R"(,"pending":)"));
  write_indices(out, result.pending);
  out.append(std::string_view(R"(,"first_error":)"));
  if (const auto& e = result.first_error) {
    fmt::format_to(std::back_inserter(out), R"({{"index":{},"id":"{}","error":{{"type":)", e->index,
                   e->id.to_string());
    append_json_string(out, e->error.type);
    out.append(std::string_view(R"(,"message":)"));
    append_json_string(out, e->error.message);
    out.append(std::string_view("}}"));
  } else {
    out.append(std::string_view("null"));
  }
}

}  // namespace

// What a streamed gather tells the response writer, in order: started (or failed before
// anything was written), one line per job done, the summary line, end.
struct gather_event {
  enum class kind { started, line, end, failed } what = kind::line;
  std::string text;
  std::exception_ptr error;
};

// The events of one streamed gather, from the gather's coroutine to the response writer,
// which runs on the same executor. If the writer stops early (its client went away, it was
// cancelled), it abandons the gather through `stop`.
struct gather_stream {
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
}  // namespace

// Runs one streamed gather beside the response writer, feeding it events.
core::awaitable<void> http_api::stream_gather(std::vector<core::gather_entry> entries,
                                              core::gather_options options,
                                              std::shared_ptr<gather_stream> stream,
                                              std::string request_id) {
  core::gather_progress progress;
  progress.started = [stream] { stream->send({gather_event::kind::started, {}, {}}); };
  progress.done = [stream](std::size_t, const std::shared_ptr<const core::job_record>& job) {
    fmt::memory_buffer line;
    write_job(line, job->snapshot());
    line.push_back('\n');
    stream->send({gather_event::kind::line, fmt::to_string(line), {}});
  };
  try {
    const std::size_t count = entries.size();
    const auto result = co_await engine_.gather(std::move(entries), options, std::move(progress));
    record_gather(result, count, request_id);
    fmt::memory_buffer line;
    line.append(std::string_view(R"({"summary":{)"));
    write_summary_fields(line, result);
    line.append(std::string_view("}}\n"));
    stream->send({gather_event::kind::line, fmt::to_string(line), {}});
    stream->send({gather_event::kind::end, {}, {}});
  } catch (...) {
    stream->send({gather_event::kind::failed, {}, std::current_exception()});
  }
  stream->ended = true;
}

void http_api::record_gather(const core::gather_result& result, std::size_t count,
                             const std::string& request_id) {
  const auto outcome = core::to_string(result.outcome);
  metrics_.gather_done(outcome, std::chrono::duration<double>(result.elapsed).count());
  log::info("gather.done")
      .add("request_id", request_id)
      .add("outcome", outcome)
      .add("jobs", count)
      .add("done", result.done.size())
      .add("pending", result.pending.size())
      .add("elapsed_ms", static_cast<std::int64_t>(result.elapsed.count()));
}

core::awaitable<http_response> http_api::gather(const http_request& req, const route_match& match) {
  query_reader(match.query).finish();
  require_json_body(req);
  const auto document = std::make_shared<const json>(parse_json_body(req.body));
  const json& body = *document;
  object_reader r(body, "",
                  {"jobs", "return_when", "return_exceptions", "cancel_on_error", "cancel_pending",
                   "timeout_ms"});
  const json* jobs = r.raw("jobs");
  if (!jobs || !jobs->is_array() || jobs->empty() || jobs->size() > config_.max_gather) {
    throw invalid_request("field 'jobs' must be an array of 1 to " +
                          std::to_string(config_.max_gather) + " job ids or job specs");
  }
  std::vector<core::gather_entry> entries(jobs->size());
  const std::function<void(std::size_t, std::size_t)> read_entries = [&](std::size_t begin,
                                                                         std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) entries[i] = read_entry((*jobs)[i], i, limits_);
  };  // (named: g++ 12 destroys a temporary in a co_await's arguments twice)
  co_await in_two_halves(jobs->size(), read_entries);
  core::gather_options options;
  if (auto when = r.string("return_when", 32)) options.when = parse_return_when(*when);
  options.return_exceptions = r.boolean("return_exceptions").value_or(true);
  options.cancel_on_error = r.boolean("cancel_on_error").value_or(false);
  options.cancel_pending = r.boolean("cancel_pending").value_or(false);
  options.timeout = r.duration("timeout_ms", 86'400'000);

  if (wants_ndjson(req)) {
    // as_completed: one job per line as each is done, then the summary. Refusals (404, 429,
    // ...) still come as problem documents: the head is written only once the gather started.
    const auto ex = co_await net::this_coro::executor;
    auto stream = std::make_shared<gather_stream>(ex, entries.size() + 4);
    net::co_spawn(ex, stream_gather(std::move(entries), options, stream, req.request_id),
                  net::bind_cancellation_slot(stream->stop.slot(), net::detached));
    abandon_unless_done waiting{*stream};  // we may be cancelled before it starts
    auto [ec, first] = co_await stream->events.async_receive(net::as_tuple(net::use_awaitable));
    if (ec) throw boost::system::system_error(ec);
    waiting.done = true;
    if (first.what == gather_event::kind::failed) std::rethrow_exception(first.error);
    http_response res;
    res.content_type = "application/x-ndjson";
    res.stream = [stream](body_writer& out) -> core::awaitable<void> {
      abandon_unless_done writing{*stream};
      for (;;) {
        auto [ec, e] = co_await stream->events.async_receive(net::as_tuple(net::use_awaitable));
        if (ec) co_return;  // cancelled: the client is gone
        if (e.what != gather_event::kind::line) break;
        if (!co_await out.write(std::move(e.text))) co_return;  // the client is gone
      }
      writing.done = true;
    };
    co_return res;
  }

  const std::size_t count = entries.size();
  // A large gather's answer is written while its jobs finish, on the last I/O thread.
  const auto encoder = std::make_shared<gather_encoder>(io_.back(), count);
  core::gather_result gathered =
      co_await engine_.gather(std::move(entries), options, encoder->progress());
  const auto kept = std::make_shared<const core::gather_result>(std::move(gathered));
  const core::gather_result& result = *kept;
  record_gather(result, count, req.request_id);

  // Written straight into the body (3 MB for 10,000 jobs: one copy, not two).
  std::string text;
  text.reserve(result.jobs.size() * 320 + 256);  // a job object is ~310 bytes: no regrowth
  text.append(R"({"jobs":[)");
  co_await encoder->write_jobs(text, result.jobs);
  fmt::memory_buffer tail;
  tail.append(std::string_view("],"));
  write_summary_fields(tail, result);
  tail.push_back('}');
  text.append(tail.data(), tail.size());
  http_response res;
  res.body = std::move(text);
  res.release_after_write = {document, kept, encoder};  // 10,000 jobs take ms to free
  co_return res;
}

}  // namespace gatherd::service
