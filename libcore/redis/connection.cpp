#include "libcore/redis/connection.hpp"

#include <atomic>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>
#include <deque>

#include "libcore/notifier.hpp"
#include "libcore/redis/backoff.hpp"
#include "libcore/redis/pending_reply.hpp"
#include "libcore/redis/protocol.hpp"
#include "libcore/redis/stream.hpp"

namespace gatherd::core::redis {

namespace {

// One connection from connect to loss. A new one replaces it after a loss, so nothing of a lost
// connection (a late write, a stale reply) can reach the commands of the next.
struct session {
  explicit session(stream s) : sock(std::move(s)) {}
  stream sock;
  reply_parser parser;
  std::vector<char> in = std::vector<char>(16 * 1024);
  std::string out;  // commands not yet handed to a write, in order
  bool writing = false;
  bool broken = false;
  std::deque<std::shared_ptr<pending_reply>> inflight;  // awaiting replies, oldest first
};

// What a new connection sends before it is used: AUTH, SELECT, then a PING whose answer shows
// Redis is serving (a stopped Redis still accepts TCP connections in its backlog).
struct handshake {
  std::string bytes;
  std::vector<std::string> steps;
};

handshake make_handshake(const endpoint& where) {
  handshake h;
  auto add = [&](std::vector<std::string> args) {
    h.bytes += format_command(args);
    h.steps.push_back(args.front());
  };
  if (!where.password.empty()) {
    if (where.user.empty()) {
      add({"AUTH", where.password});
    } else {
      add({"AUTH", where.user, where.password});
    }
  }
  if (where.db != 0) add({"SELECT", std::to_string(where.db)});
  add({"PING"});
  return h;
}

awaitable<reply> read_reply(session& s) {
  for (;;) {
    if (auto r = s.parser.next()) co_return std::move(*r);
    const std::size_t n = co_await s.sock.read_some(net::buffer(s.in));
    s.parser.feed(s.in.data(), n);
  }
}

// A write buffer larger than this is not kept for the next batch.
constexpr std::size_t max_kept_buffer = 1 << 20;

std::string describe_io_error(const boost::system::system_error& e) {
  if (e.code() == net::error::eof) return "Redis closed the connection";
  return "connection lost: " + e.code().message();
}

}  // namespace

struct connection::state : std::enable_shared_from_this<state> {
  state(executor ex, connection_options o)
      : strand(net::make_strand(ex)),
        options(std::move(o)),
        where_text(options.where.to_string()),
        retry(options.reconnect_min, options.reconnect_max),
        wait_timer(strand) {}

  net::strand<executor> strand;
  const connection_options options;
  const std::string where_text;  // for messages: never the password
  backoff retry;

  std::shared_ptr<session> current;  // the ready connection; null while there is none
  std::atomic<bool> up{false};       // current != null, readable from any thread
  bool closed = false;
  // Background coroutines still running (the run loop, writers): close() waits
  // for none to be left, so that afterwards nothing of this connection touches its executor.
  std::size_t tasks = 0;
  std::string last_error = "not connected yet";
  // The connect deadline or the pause before a reconnect; close() makes it expire at once.
  net::steady_timer wait_timer;
  notifier state_changed;  // connected, closed, or the last background coroutine ended

  std::string millis_text() const { return std::to_string(options.timeout.count()) + " ms"; }

  void task_ended() {
    if (--tasks == 0) state_changed.notify_all();
  }

  void observe(std::string_view name, command_outcome outcome, steady_clock::time_point t0) {
    if (options.observer) options.observer->command_done(name, outcome, steady_clock::now() - t0);
  }

  // Ends a connection: its pending commands fail with `code`, its socket closes (which ends its
  // reader and writer), and if it was the ready one, the run loop goes on to reconnect.
  // By value: `s` is often `current`, which this resets.
  void break_session(std::shared_ptr<session> s, errc code, const std::string& why) {
    if (s->broken) return;
    s->broken = true;
    const error failure(code, "redis " + where_text + ": " + why);
    for (auto& r : s->inflight) r->fail(failure);
    s->inflight.clear();
    s->out.clear();
    s->sock.close();
    if (current == s) {
      current.reset();
      up = false;
      last_error = why;
      if (!closed && options.observer) options.observer->disconnected(options.where, why);
    }
  }

  void deliver(const std::shared_ptr<session>& s, reply r) {
    if (s->broken) return;
    if (s->inflight.empty()) {
      break_session(s, errc::protocol, "a reply nobody asked for: " + r.describe());
      return;
    }
    auto request = std::move(s->inflight.front());
    s->inflight.pop_front();
    request->settle(std::move(r));  // dropped if its caller has left
  }

  void start_writing(const std::shared_ptr<session>& s) {
    if (s->writing || s->out.empty()) return;
    s->writing = true;
    ++tasks;
    net::co_spawn(
        strand, [self = shared_from_this(), s] { return self->write_loop(s); }, net::detached);
  }

  awaitable<void> write_loop(std::shared_ptr<session> s) {
    std::string batch;
    try {
      while (!s->broken && !s->out.empty()) {
        batch.clear();
        std::swap(batch, s->out);  // everything queued meanwhile goes out in one write
        co_await s->sock.write(net::buffer(batch));
        if (batch.capacity() > max_kept_buffer) std::string().swap(batch);  // after a huge command
      }
    } catch (const boost::system::system_error& e) {
      break_session(s, errc::disconnected, describe_io_error(e));
    } catch (const std::exception& e) {
      break_session(s, errc::disconnected, e.what());
    }
    s->writing = false;
    task_ended();
  }

  awaitable<void> read_loop(std::shared_ptr<session> s) {
    try {
      for (;;) {
        while (auto r = s->parser.next()) deliver(s, std::move(*r));
        if (s->broken) co_return;
        const std::size_t n = co_await s->sock.read_some(net::buffer(s->in));
        s->parser.feed(s->in.data(), n);
      }
    } catch (const error& e) {
      break_session(s, e.code(), e.what());
    } catch (const boost::system::system_error& e) {
      break_session(s, errc::disconnected, describe_io_error(e));
    } catch (const std::exception& e) {  // out of memory for a reply: start afresh, never stall
      break_session(s, errc::disconnected, e.what());
    }
  }

  // Connects and runs the handshake; throws on any failure (an error reply included).
  awaitable<std::shared_ptr<session>> open_session() {
    auto s = std::make_shared<session>(co_await stream::connect(options.where));
    const handshake hello = make_handshake(options.where);
    co_await s->sock.write(net::buffer(hello.bytes));
    for (const auto& step : hello.steps) {
      const reply r = co_await read_reply(*s);
      if (r.is_error()) throw error(errc::server_error, step + " failed: " + r.error_message());
    }
    co_return s;
  }

  // Never throws: `||` waits for one branch to *succeed*, so a refused connection must come back
  // as a value, or the attempt would last the whole timeout.
  awaitable<std::shared_ptr<session>> attempt(std::string& failure) {
    try {
      co_return co_await open_session();
    } catch (const boost::system::system_error& e) {
      failure = "connect failed: " + e.code().message();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    co_return nullptr;
  }

  // One attempt, bounded by the timeout (a name resolution, which Asio cannot cancel, may
  // overrun it). Returns null and sets `failure` when it did not succeed.
  awaitable<std::shared_ptr<session>> try_connect(std::string& failure) {
    using namespace net::experimental::awaitable_operators;
    wait_timer.expires_after(options.timeout);
    auto result =
        co_await (attempt(failure) || wait_timer.async_wait(net::as_tuple(net::use_awaitable)));
    if (result.index() == 0) co_return std::get<0>(std::move(result));
    failure = "no answer within " + millis_text() + " (connect, AUTH, SELECT, PING)";
    co_return nullptr;
  }

  // The background loop: connect, serve until lost, reconnect after a pause; until close().
  awaitable<void> run() {
    bool reconnect = false;
    while (!closed) {
      std::string failure;
      auto s = co_await try_connect(failure);
      if (closed) {
        if (s) s->sock.close();
        break;
      }
      if (!s) {
        last_error = failure;
        const millis pause = retry.next();
        if (options.observer) options.observer->connect_failed(options.where, failure, pause);
        wait_timer.expires_after(pause);
        co_await wait_timer.async_wait(net::as_tuple(net::use_awaitable));
        continue;
      }
      retry.reset();
      current = s;
      up = true;
      if (options.observer) options.observer->connected(options.where, reconnect);
      reconnect = true;
      state_changed.notify_all();
      co_await read_loop(s);  // until the connection breaks
    }
    task_ended();
  }

  awaitable<reply> command_here(std::string payload, std::string name) {
    const auto t0 = steady_clock::now();
    if (closed) {
      observe(name, command_outcome::disconnected, t0);
      throw error(errc::closed, "redis " + where_text + ": connection closed");
    }
    auto s = current;
    if (!s) {
      observe(name, command_outcome::disconnected, t0);
      throw error(errc::disconnected,
                  "redis " + where_text + ": not connected (" + last_error + ")");
    }
    if ((co_await net::this_coro::cancellation_state).cancelled() != net::cancellation_type::none) {
      observe(name, command_outcome::cancelled, t0);  // cancelled on the way here: never sent
      throw boost::system::system_error(net::error::operation_aborted);
    }
    auto request = std::make_shared<pending_reply>(strand, t0 + options.timeout);
    s->out += payload;
    s->inflight.push_back(request);
    start_writing(s);
    pending_reply::outcome outcome;
    try {
      outcome = co_await request->wait();
    } catch (const boost::system::system_error&) {
      // Cancelled before the wait could begin (Asio throws rather than start it): as below.
      request->abandoned = true;
      outcome = pending_reply::outcome::cancelled;
    }
    switch (outcome) {
      case pending_reply::outcome::answered:
        observe(name,
                request->answer->is_error() ? command_outcome::error_reply : command_outcome::ok,
                t0);
        co_return std::move(*request->answer);
      case pending_reply::outcome::failed:
        observe(name,
                request->failure->code() == errc::timeout ? command_outcome::timeout
                                                          : command_outcome::disconnected,
                t0);
        throw *request->failure;
      case pending_reply::outcome::timed_out:
        observe(name, command_outcome::timeout, t0);
        break_session(s, errc::timeout, "no reply within " + millis_text() + "; connection reset");
        throw error(errc::timeout,
                    "redis " + where_text + ": no reply to " + name + " within " + millis_text());
      case pending_reply::outcome::cancelled:
        observe(name, command_outcome::cancelled, t0);
        break;
    }
    throw boost::system::system_error(net::error::operation_aborted);
  }

  void shut_down() {
    if (closed) return;
    closed = true;
    if (current) break_session(current, errc::closed, "connection closed");
    // Ends a pending connect or pause, and makes one about to begin end at once.
    wait_timer.expires_at(steady_clock::time_point::min());
    state_changed.notify_all();
  }
};

connection::connection(executor ex, connection_options options)
    : state_(std::make_shared<state>(std::move(ex), std::move(options))) {
  state_->tasks = 1;  // run(), until close()
  net::co_spawn(
      state_->strand, [s = state_] { return s->run(); }, net::detached);
}

connection::~connection() {
  net::post(state_->strand, [s = state_] { s->shut_down(); });
}

awaitable<reply> connection::command(std::vector<std::string> args) {
  if (args.empty()) throw std::invalid_argument("redis: a command needs at least its name");
  // Encoded here, on the caller's thread: the strand only queues bytes.
  std::string payload = format_command(args);
  return net::co_spawn(
      state_->strand,
      [s = state_, payload = std::move(payload), name = std::move(args.front())]() mutable {
        return s->command_here(std::move(payload), std::move(name));
      },
      net::use_awaitable);
}

awaitable<void> connection::wait_connected(millis within) {
  return net::co_spawn(
      state_->strand,
      [s = state_, within]() -> awaitable<void> {
        const auto deadline = steady_clock::now() + within;
        while (!s->up) {
          if (s->closed)
            throw error(errc::closed, "redis " + s->where_text + ": connection closed");
          if (steady_clock::now() >= deadline) {
            throw error(errc::timeout, "redis " + s->where_text + ": not connected within " +
                                           std::to_string(within.count()) + " ms (" +
                                           s->last_error + ")");
          }
          co_await s->state_changed.wait_until(deadline);
        }
      },
      net::use_awaitable);
}

bool connection::connected() const {
  return state_->up;
}

const endpoint& connection::where() const {
  return state_->options.where;
}

awaitable<void> connection::close() {
  return net::co_spawn(
      state_->strand,
      [s = state_]() -> awaitable<void> {
        s->shut_down();
        while (s->tasks > 0) co_await s->state_changed.wait_until(steady_clock::time_point::max());
      },
      net::use_awaitable);
}

}  // namespace gatherd::core::redis
