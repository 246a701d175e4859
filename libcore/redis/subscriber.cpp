#include "libcore/redis/subscriber.hpp"

#include <atomic>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>
#include <deque>
#include <set>

#include "libcore/notifier.hpp"
#include "libcore/redis/backoff.hpp"
#include "libcore/redis/pending_reply.hpp"
#include "libcore/redis/protocol.hpp"
#include "libcore/redis/stream.hpp"

namespace gatherd::core::redis {

namespace {

// What one command sent on the subscribed connection still waits for. Redis answers a
// SUBSCRIBE of n channels with n confirmations (or one error), in order with other commands,
// with published messages interleaved anywhere: confirmations are counted off the oldest.
struct ack {
  std::string command;  // AUTH, SUBSCRIBE, PING...
  std::size_t remaining = 1;
  steady_clock::time_point sent;
  std::shared_ptr<pending_reply> waiter;  // the caller's, if one waits
  bool ends_handshake = false;
};

struct session {
  session(stream s, const executor& ex) : sock(std::move(s)), tick(ex) {}
  stream sock;
  reply_parser parser;
  std::vector<char> in = std::vector<char>(16 * 1024);
  std::string out;
  bool writing = false;
  bool broken = false;
  bool ready = false;  // the handshake's last confirmation has come
  std::deque<ack> acks;
  steady_clock::time_point last_heard = steady_clock::now();
  net::steady_timer tick;  // the health check's
};

// A write buffer larger than this is not kept for the next batch.
constexpr std::size_t max_kept_buffer = 1 << 20;

std::string describe_io_error(const boost::system::system_error& e) {
  if (e.code() == net::error::eof) return "Redis closed the connection";
  return "connection lost: " + e.code().message();
}

// (A function, not a braced list at the call: g++ 12 mishandles braced lists inside coroutines.)
const std::vector<std::string>& ping_command() {
  static const std::vector<std::string> ping{"PING"};
  return ping;
}

// The command that (un)subscribes `names`: {"SUBSCRIBE", names...}.
std::vector<std::string> with_command(std::string command, const std::vector<std::string>& names) {
  std::vector<std::string> args;
  args.reserve(names.size() + 1);
  args.push_back(std::move(command));
  args.insert(args.end(), names.begin(), names.end());
  return args;
}

}  // namespace

struct subscriber::state : std::enable_shared_from_this<state> {
  state(executor ex, connection_options o, subscriber_handlers h)
      : strand(net::make_strand(ex)),
        options(std::move(o)),
        handlers(std::move(h)),
        where_text(options.where.to_string()),
        retry(options.reconnect_min, options.reconnect_max),
        wait_timer(strand) {}

  net::strand<executor> strand;
  const connection_options options;
  const subscriber_handlers handlers;
  const std::string where_text;
  backoff retry;

  std::set<std::string> channels;
  std::set<std::string> patterns;

  std::shared_ptr<session> current;  // connected (maybe not ready yet); null while there is none
  std::atomic<bool> up{false};       // current is ready
  bool was_ready = false;            // some connection has been ready before
  bool closed = false;
  // Background coroutines still running (the run loop, writers, health checks): close() waits
  // for none to be left, so that afterwards nothing of this connection touches its executor.
  std::size_t tasks = 0;
  std::string last_error = "not connected yet";
  net::steady_timer wait_timer;
  notifier state_changed;  // ready, closed, or the last background coroutine ended

  std::string millis_text() const { return std::to_string(options.timeout.count()) + " ms"; }

  void task_ended() {
    if (--tasks == 0) state_changed.notify_all();
  }

  // By value: `s` is often `current`, which this resets.
  void break_session(std::shared_ptr<session> s, errc code, const std::string& why) {
    if (s->broken) return;
    s->broken = true;
    const error failure(code, "redis " + where_text + ": " + why);
    for (auto& a : s->acks) {
      if (a.waiter) a.waiter->fail(failure);
    }
    s->acks.clear();
    s->out.clear();
    s->sock.close();
    s->tick.cancel();
    if (current == s) {
      current.reset();
      up = false;
      last_error = why;
      if (s->ready && !closed && options.observer) {
        options.observer->disconnected(options.where, why);
      }
    }
  }

  void send(const std::shared_ptr<session>& s, const std::vector<std::string>& args,
            std::size_t confirmations, std::shared_ptr<pending_reply> waiter = nullptr,
            bool ends_handshake = false) {
    s->out += format_command(args);
    s->acks.push_back(
        ack{args.front(), confirmations, steady_clock::now(), std::move(waiter), ends_handshake});
    if (s->writing) return;
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
        std::swap(batch, s->out);
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

  void became_ready(const std::shared_ptr<session>& s) {
    s->ready = true;
    up = true;
    retry.reset();
    const bool reconnect = was_ready;
    was_ready = true;
    if (options.observer) options.observer->connected(options.where, reconnect);
    state_changed.notify_all();
    if (handlers.on_ready) handlers.on_ready(reconnect);
  }

  // A reply that is not a published message: the oldest command's confirmation (or error).
  void confirm(const std::shared_ptr<session>& s, reply r) {
    if (s->acks.empty()) {
      break_session(s, errc::protocol, "a reply nobody asked for: " + r.describe());
      return;
    }
    ack& head = s->acks.front();
    if (r.is_error()) {
      const std::string why = head.command + " failed: " + r.error_message();
      if (!s->ready) {  // the handshake's (AUTH): this connection is no use
        break_session(s, errc::server_error, why);
        return;
      }
      // One error stands for all of a command's confirmations.
      if (head.waiter)
        head.waiter->fail(error(errc::server_error, "redis " + where_text + ": " + why));
      s->acks.pop_front();
      return;
    }
    if (--head.remaining > 0) return;
    ack done = std::move(head);
    s->acks.pop_front();
    if (done.waiter) done.waiter->settle(std::move(r));
    if (done.ends_handshake) became_ready(s);
  }

  void on_reply(const std::shared_ptr<session>& s, reply r) {
    if (s->broken) return;
    s->last_heard = steady_clock::now();
    if (r.is_array() && !r.as_array().empty() && r.as_array().front().is_string()) {
      const auto& e = r.as_array();
      const std::string& kind = e.front().as_string();
      if (kind == "message" && e.size() == 3) {
        if (handlers.on_message)
          handlers.on_message(message{e[1].as_string(), e[2].as_string(), {}});
        return;
      }
      if (kind == "pmessage" && e.size() == 4) {
        if (handlers.on_message) {
          handlers.on_message(message{e[2].as_string(), e[3].as_string(), e[1].as_string()});
        }
        return;
      }
    }
    confirm(s, std::move(r));
  }

  awaitable<void> read_loop(std::shared_ptr<session> s) {
    try {
      for (;;) {
        while (auto r = s->parser.next()) on_reply(s, std::move(*r));
        if (s->broken) co_return;
        const std::size_t n = co_await s->sock.read_some(net::buffer(s->in));
        s->parser.feed(s->in.data(), n);
      }
    } catch (const error& e) {
      break_session(s, e.code(), e.what());
    } catch (const boost::system::system_error& e) {
      break_session(s, errc::disconnected, describe_io_error(e));
    } catch (const std::exception& e) {  // a handler that threw, or no memory: start afresh
      break_session(s, errc::disconnected, e.what());
    }
  }

  // Resets a connection whose oldest command is overdue, and PINGs one that has been quiet, so
  // a stalled Redis is noticed even when nobody publishes.
  awaitable<void> watch(std::shared_ptr<session> s) {
    const millis period = std::max(options.timeout / 4, millis{5});
    while (!s->broken) {
      s->tick.expires_after(period);
      co_await s->tick.async_wait(net::as_tuple(net::use_awaitable));
      if (s->broken) break;
      const auto now = steady_clock::now();
      if (!s->acks.empty() && now - s->acks.front().sent > options.timeout) {
        break_session(s, errc::timeout,
                      "no reply to " + s->acks.front().command + " within " + millis_text() +
                          "; connection reset");
        break;
      }
      if (s->acks.empty() && now - s->last_heard >= options.timeout) send(s, ping_command(), 1);
    }
    task_ended();
  }

  // AUTH, the whole set, then a PING whose answer ends the handshake (and answers even when the
  // set is empty).
  void start_handshake(const std::shared_ptr<session>& s) {
    const endpoint& where = options.where;
    if (!where.password.empty()) {
      if (where.user.empty()) {
        send(s, {"AUTH", where.password}, 1);
      } else {
        send(s, {"AUTH", where.user, where.password}, 1);
      }
    }
    if (!channels.empty()) {
      send(s, with_command("SUBSCRIBE", {channels.begin(), channels.end()}), channels.size());
    }
    if (!patterns.empty()) {
      send(s, with_command("PSUBSCRIBE", {patterns.begin(), patterns.end()}), patterns.size());
    }
    send(s, ping_command(), 1, nullptr, true);
  }

  // Never throws: `||` waits for one branch to *succeed* (see connection.cpp).
  awaitable<std::shared_ptr<session>> attempt(std::string& failure) {
    try {
      auto sock = co_await stream::connect(options.where);
      co_return std::make_shared<session>(std::move(sock), strand);
    } catch (const boost::system::system_error& e) {
      failure = "connect failed: " + e.code().message();
    }
    co_return nullptr;
  }

  awaitable<std::shared_ptr<session>> try_connect(std::string& failure) {
    using namespace net::experimental::awaitable_operators;
    wait_timer.expires_after(options.timeout);
    auto result =
        co_await (attempt(failure) || wait_timer.async_wait(net::as_tuple(net::use_awaitable)));
    if (result.index() == 0) co_return std::get<0>(std::move(result));
    failure = "no answer within " + millis_text() + " (connect)";
    co_return nullptr;
  }

  awaitable<void> pause_after_failure(std::string failure) {
    last_error = failure;
    const millis pause = retry.next();
    if (options.observer) options.observer->connect_failed(options.where, failure, pause);
    wait_timer.expires_after(pause);
    co_await wait_timer.async_wait(net::as_tuple(net::use_awaitable));
  }

  awaitable<void> run() {
    while (!closed) {
      std::string failure;
      auto s = co_await try_connect(failure);
      if (closed) {
        if (s) s->sock.close();
        break;
      }
      if (!s) {
        co_await pause_after_failure(failure);
        continue;
      }
      current = s;
      start_handshake(s);
      ++tasks;
      net::co_spawn(
          strand, [self = shared_from_this(), s] { return self->watch(s); }, net::detached);
      co_await read_loop(s);
      // Broken before it was ready (AUTH refused, no PONG): a failed attempt, with its pause.
      if (!s->ready && !closed) co_await pause_after_failure(last_error);
    }
    task_ended();
  }

  enum class change { add, remove };

  awaitable<void> change_here(std::string command, std::vector<std::string> names, bool pattern,
                              change how) {
    if (names.empty()) throw std::invalid_argument("redis: " + command + " needs a name");
    if (closed) throw error(errc::closed, "redis " + where_text + ": subscriber closed");
    auto& set = pattern ? patterns : channels;
    for (const auto& n : names) {
      if (how == change::add) {
        set.insert(n);
      } else {
        set.erase(n);
      }
    }
    auto s = current;
    if (!s) {
      if (how == change::remove) co_return;
      throw error(errc::disconnected, "redis " + where_text + ": not connected (" + last_error +
                                          "); subscribed once it reconnects");
    }
    auto waiter = std::make_shared<pending_reply>(strand, steady_clock::now() + options.timeout);
    send(s, with_command(command, names), names.size(), waiter);
    pending_reply::outcome outcome;
    try {
      outcome = co_await waiter->wait();
    } catch (const boost::system::system_error&) {
      // Cancelled before the wait could begin (Asio throws rather than start it).
      waiter->abandoned = true;
      outcome = pending_reply::outcome::cancelled;
    }
    switch (outcome) {
      case pending_reply::outcome::answered:
        co_return;
      case pending_reply::outcome::failed:
        throw *waiter->failure;
      case pending_reply::outcome::timed_out:
        break_session(s, errc::timeout,
                      "no reply to " + command + " within " + millis_text() + "; connection reset");
        throw error(errc::timeout, "redis " + where_text + ": no reply to " + command + " within " +
                                       millis_text());
      case pending_reply::outcome::cancelled:
        break;
    }
    throw boost::system::system_error(net::error::operation_aborted);
  }

  void shut_down() {
    if (closed) return;
    closed = true;
    if (current) break_session(current, errc::closed, "subscriber closed");
    wait_timer.expires_at(steady_clock::time_point::min());
    state_changed.notify_all();
  }
};

subscriber::subscriber(executor ex, connection_options options, subscriber_handlers handlers)
    : state_(std::make_shared<state>(std::move(ex), std::move(options), std::move(handlers))) {
  state_->tasks = 1;  // run(), until close()
  net::co_spawn(
      state_->strand, [s = state_] { return s->run(); }, net::detached);
}

subscriber::~subscriber() {
  net::post(state_->strand, [s = state_] { s->shut_down(); });
}

namespace {
template <class F>
awaitable<void> on_strand(const net::strand<executor>& strand, F f) {
  return net::co_spawn(strand, std::move(f), net::use_awaitable);
}
}  // namespace

awaitable<void> subscriber::subscribe(std::vector<std::string> channels) {
  return on_strand(state_->strand, [s = state_, names = std::move(channels)]() mutable {
    return s->change_here("SUBSCRIBE", std::move(names), false, state::change::add);
  });
}

awaitable<void> subscriber::psubscribe(std::vector<std::string> patterns) {
  return on_strand(state_->strand, [s = state_, names = std::move(patterns)]() mutable {
    return s->change_here("PSUBSCRIBE", std::move(names), true, state::change::add);
  });
}

awaitable<void> subscriber::unsubscribe(std::vector<std::string> channels) {
  return on_strand(state_->strand, [s = state_, names = std::move(channels)]() mutable {
    return s->change_here("UNSUBSCRIBE", std::move(names), false, state::change::remove);
  });
}

awaitable<void> subscriber::punsubscribe(std::vector<std::string> patterns) {
  return on_strand(state_->strand, [s = state_, names = std::move(patterns)]() mutable {
    return s->change_here("PUNSUBSCRIBE", std::move(names), true, state::change::remove);
  });
}

awaitable<void> subscriber::wait_ready(millis within) {
  return on_strand(state_->strand, [s = state_, within]() -> awaitable<void> {
    const auto deadline = steady_clock::now() + within;
    while (!s->up) {
      if (s->closed) throw error(errc::closed, "redis " + s->where_text + ": subscriber closed");
      if (steady_clock::now() >= deadline) {
        throw error(errc::timeout, "redis " + s->where_text + ": not subscribed within " +
                                       std::to_string(within.count()) + " ms (" + s->last_error +
                                       ")");
      }
      co_await s->state_changed.wait_until(deadline);
    }
  });
}

bool subscriber::ready() const {
  return state_->up;
}

awaitable<void> subscriber::close() {
  return on_strand(state_->strand, [s = state_]() -> awaitable<void> {
    s->shut_down();
    while (s->tasks > 0) co_await s->state_changed.wait_until(steady_clock::time_point::max());
  });
}

}  // namespace gatherd::core::redis
