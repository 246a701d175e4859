#include "service/websocket/protocol.hpp"

#include <fmt/format.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>

#include "service/api/gather.hpp"
#include "service/api/jobs.hpp"
#include "service/codec/gather_codec.hpp"
#include "service/codec/json_reader.hpp"
#include "service/codec/json_text.hpp"
#include "service/http/problem.hpp"

namespace gatherd::service {

namespace net = boost::asio;

namespace {

using json = nlohmann::json;

constexpr std::string_view ops[] = {"submit", "cancel", "watch", "unwatch", "gather"};

// A client-chosen ref: a string of 1..128 characters or an integer, echoed verbatim.
bool valid_ref(const json& ref) {
  if (ref.is_number_integer()) return true;
  if (!ref.is_string()) return false;
  const auto& s = ref.get_ref<const std::string&>();
  return !s.empty() && s.size() <= 128;
}

message_ptr make_message(fmt::memory_buffer& out) {
  return std::make_shared<const std::string>(out.data(), out.size());
}

void append_ref(fmt::memory_buffer& out, const json& ref) {
  out.append(std::string_view(R"(,"ref":)"));
  append_json(out, ref);
}

// Rejects fields outside `allowed` the way REST bodies do (a 400 naming the field).
void check_fields(const json& message, std::initializer_list<std::string_view> allowed) {
  object_reader(message, "", allowed);
}

// Passes a streamed gather's results on as `gather` and `gather_done` messages.
class gather_messages : public gather_sink {
 public:
  gather_messages(ws_outbox& out, json ref) : out_(out), ref_(std::move(ref)) {}

  core::awaitable<bool> job_done(const core::job_snapshot& job) override {
    fmt::memory_buffer out;
    out.append(std::string_view(R"({"type":"gather")"));
    append_ref(out, ref_);
    out.append(std::string_view(R"(,"job":)"));
    write_job(out, job);
    out.push_back('}');
    co_return co_await out_.send(make_message(out), "gather");
  }

  core::awaitable<bool> finished(const core::gather_result& result) override {
    fmt::memory_buffer out;
    out.append(std::string_view(R"({"type":"gather_done")"));
    append_ref(out, ref_);
    out.push_back(',');
    write_gather_summary_fields(out, result);
    out.push_back('}');
    co_return co_await out_.send(make_message(out), "gather_done");
  }

 private:
  ws_outbox& out_;
  json ref_;
};

}  // namespace

ws_protocol::ws_protocol(ws_services& services, ws_outbox& out, core::executor ex,
                         const http_request& upgrade)
    : services_(services), out_(out), ex_(std::move(ex)), session_id_(upgrade.request_id) {}

core::awaitable<void> ws_protocol::receive(std::string text, bool binary) {
  ++messages_in_;
  if (binary) {
    services_.meter.ws_received("invalid");
    error(nullptr, "invalid_message", "messages must be JSON text frames, not binary");
    co_return;
  }
  json message;
  try {
    message = parse_json_body(text);  // the reader of REST bodies: same numbers, same depth limit
  } catch (const request_error&) {
    services_.meter.ws_received("invalid");
    error(nullptr, "invalid_json", "the message is not valid JSON");
    co_return;
  }
  json ref = nullptr;
  const json* op = nullptr;
  if (message.is_object()) {
    if (auto it = message.find("ref"); it != message.end() && valid_ref(*it)) ref = *it;
    if (auto it = message.find("op"); it != message.end() && it->is_string()) op = &*it;
  }
  if (!op || ref.is_null()) {
    services_.meter.ws_received("invalid");
    error(ref, "invalid_message",
          "a message is a JSON object with 'op' (a string) and 'ref' (a string of 1 to 128 "
          "characters or an integer)");
    co_return;
  }
  const std::string name = op->get<std::string>();
  if (std::find(std::begin(ops), std::end(ops), name) == std::end(ops)) {
    services_.meter.ws_received("invalid");
    error(ref, "unknown_op",
          "unknown op '" + name + "'; one of submit, cancel, watch, unwatch, gather");
    co_return;
  }
  services_.meter.ws_received(name);

  while (running_.size() >= services_.settings.ws_max_inflight && !closed_) {
    co_await operation_ended_.wait_until(core::steady_clock::time_point::max());
  }
  if (closed_) co_return;
  if (name == "submit") {
    start(submit(std::move(ref), std::move(message)));
  } else if (name == "cancel") {
    start(cancel(std::move(ref), std::move(message)));
  } else if (name == "watch") {
    start(watch(std::move(ref), std::move(message)));
  } else if (name == "unwatch") {
    start(unwatch(std::move(ref), std::move(message)));
  } else {
    start(gather(std::move(ref), std::move(message)));
  }
}

void ws_protocol::start(core::awaitable<void> operation) {
  auto slot = running_.emplace(running_.end());
  net::co_spawn(ex_, std::move(operation),
                net::bind_cancellation_slot(slot->slot(),
                                            [self = shared_from_this(), slot](std::exception_ptr) {
                                              // Not from inside its own completion: the signal
                                              // still holds the handler.
                                              net::post(self->ex_, [self, slot] {
                                                self->running_.erase(slot);
                                                self->operation_ended_.notify_all();
                                              });
                                            }));
}

core::awaitable<void> ws_protocol::close() {
  closed_ = true;
  services_.feed.forget(*this, std::vector<core::job_id>(watched_.begin(), watched_.end()));
  watched_.clear();
  for (auto& signal : running_) signal.emit(net::cancellation_type::terminal);
  operation_ended_.notify_all();  // a receive() waiting for room ends too
  while (!running_.empty()) {
    co_await operation_ended_.wait_until(core::steady_clock::time_point::max());
  }
}

void ws_protocol::deliver(message_ptr message) {
  net::post(ex_, [weak = weak_from_this(), message = std::move(message)]() mutable {
    auto self = weak.lock();
    if (self && !self->closed_) self->out_.offer(std::move(message), "job");
  });
}

// ---- operations -----------------------------------------------------------------------------

void ws_protocol::reply_problem(const json& ref) {
  reply(ref, problem_from(std::current_exception()));
}

core::awaitable<void> ws_protocol::submit(json ref, json message) {
  http_response res;
  try {
    check_fields(message, {"op", "ref", "job"});
    const auto it = message.find("job");
    if (it == message.end()) throw invalid_request("field 'job' (a job spec) is required");
    res = co_await submit_job(services_.api, parse_job_spec(*it, services_.api.limits));
  } catch (...) {
    reply_problem(ref);
    co_return;
  }
  reply(ref, res);
}

core::awaitable<void> ws_protocol::cancel(json ref, json message) {
  http_response res;
  try {
    check_fields(message, {"op", "ref", "id"});
    const auto it = message.find("id");
    if (it == message.end() || !it->is_string()) {
      throw invalid_request("field 'id' (a job id) is required");
    }
    res = co_await cancel_job(services_.api, job_id_or_404(it->get<std::string>()), {});
  } catch (...) {
    reply_problem(ref);
    co_return;
  }
  reply(ref, res);
}

namespace {
// The ids of a watch/unwatch message; empty with `all: true`.
std::vector<std::string> watch_ids(const json& message, bool& all, std::size_t max) {
  check_fields(message, {"op", "ref", "ids", "all"});
  all = false;
  if (auto it = message.find("all"); it != message.end()) {
    if (!it->is_boolean()) throw invalid_request("field 'all' must be a boolean");
    all = it->get<bool>();
  }
  std::vector<std::string> ids;
  if (auto it = message.find("ids"); it != message.end()) {
    if (!it->is_array() || it->size() > max) {
      throw invalid_request("field 'ids' must be an array of at most " + std::to_string(max) +
                            " job ids");
    }
    for (const auto& id : *it) {
      if (!id.is_string()) throw invalid_request("field 'ids' must hold job ids (strings)");
      ids.push_back(id.get<std::string>());
    }
  }
  if (ids.empty() && !all) {
    throw invalid_request("give 'ids' (a non-empty array of job ids) or 'all': true");
  }
  return ids;
}
}  // namespace

core::awaitable<void> ws_protocol::watch(json ref, json message) {
  const std::size_t max = services_.settings.ws_max_watched;
  std::vector<core::job_id> added;
  std::vector<std::string> snapshots;  // the current state of each newly watched job
  try {
    bool all = false;
    const auto ids = watch_ids(message, all, max);
    std::vector<core::job_id> wanted;
    for (const auto& text : ids) {
      auto id = core::job_id::parse(text);
      if (!id) throw request_error(404, "not_found", "no job " + text);
      if (!watched_.contains(*id) && std::find(wanted.begin(), wanted.end(), *id) == wanted.end()) {
        wanted.push_back(*id);
      }
    }
    if (watched_.size() + wanted.size() > max) {
      throw invalid_request("at most " + std::to_string(max) +
                            " job ids can be watched on one connection");
    }
    // Watch first, then read the current state: a change in between is sent twice, never lost.
    for (const auto& id : wanted) {
      services_.feed.watch(*this, id);
      watched_.insert(id);
      added.push_back(id);
    }
    // An unknown (or just deleted) job: its 404, and none of them is watched.
    for (const auto& id : wanted) {
      snapshots.push_back(std::move(co_await get_job(services_.api, id, {})).body);
    }
    if (all && !watching_all_) {
      services_.feed.watch_all(*this, true);
      watching_all_ = true;
    }
  } catch (...) {
    for (const auto& undo : added) {
      services_.feed.unwatch(*this, undo);
      watched_.erase(undo);
    }
    reply(ref, problem_from(std::current_exception()));
    co_return;
  }
  reply_watching(ref);
  for (auto& body : snapshots) {
    fmt::memory_buffer out;
    out.append(std::string_view(R"({"type":"job","job":)"));
    out.append(body);
    out.push_back('}');
    out_.offer(make_message(out), "job");
  }
}

core::awaitable<void> ws_protocol::unwatch(json ref, json message) {
  try {
    bool all = false;
    const auto ids = watch_ids(message, all, services_.settings.ws_max_watched);
    if (all) {
      services_.feed.forget(*this, std::vector<core::job_id>(watched_.begin(), watched_.end()));
      watched_.clear();
      watching_all_ = false;
    }
    for (const auto& text : ids) {
      if (auto id = core::job_id::parse(text); id && watched_.erase(*id)) {
        services_.feed.unwatch(*this, *id);
      }
    }
  } catch (...) {
    reply_problem(ref);
    co_return;
  }
  reply_watching(ref);
}

core::awaitable<void> ws_protocol::gather(json ref, json message) {
  std::shared_ptr<gather_stream> stream;
  std::size_t count = 0;
  try {
    message.erase("op");
    message.erase("ref");
    gather_request request = co_await read_gather(services_.api, message);
    count = request.entries.size();
    stream = co_await start_gather_stream(services_.api, std::move(request),
                                          fmt::format("{}.{}", session_id_, ++next_request_));
  } catch (...) {  // refused before it started: the REST problem
    reply_problem(ref);
    co_return;
  }
  reply(ref, text_response(200, fmt::format(R"({{"jobs":{}}})", count)));
  gather_messages messages(out_, ref);
  co_await pump(stream, messages);  // cancelled when the connection closes: the gather is abandoned
}

// ---- messages -------------------------------------------------------------------------------

void ws_protocol::reply(const json& ref, const http_response& res) {
  fmt::memory_buffer out;
  out.append(std::string_view(R"({"type":"reply")"));
  append_ref(out, ref);
  fmt::format_to(std::back_inserter(out), R"(,"status":{},"body":)", res.status);
  if (res.body.empty()) {
    out.append(std::string_view("null"));
  } else {
    out.append(res.body);
  }
  out.push_back('}');
  out_.offer(make_message(out), "reply");
}

void ws_protocol::reply_watching(const json& ref) {
  http_response res;
  res.body = fmt::format(R"({{"watching":{},"all":{}}})", watched_.size(), watching_all_);
  reply(ref, res);
}

void ws_protocol::error(const json& ref, const std::string& code, const std::string& detail) {
  fmt::memory_buffer out;
  out.append(std::string_view(R"({"type":"error")"));
  append_ref(out, ref);
  out.append(std::string_view(R"(,"problem":)"));
  out.append(problem_response(400, code, detail).body);
  out.push_back('}');
  out_.offer(make_message(out), "error");
}

}  // namespace gatherd::service
