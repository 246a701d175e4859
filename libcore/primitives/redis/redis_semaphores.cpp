#include "libcore/primitives/redis/redis_semaphores.hpp"

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include "libcore/job_id.hpp"
#include "libcore/primitives/primitive_error.hpp"
#include "libcore/primitives/redis/semaphore_scripts.hpp"
#include "libcore/redis/error.hpp"

namespace gatherd::core {

namespace {

std::string script_text(const char* body) {
  return std::string(semaphore_lua::prelude) + body;
}

// Runs a Redis call and turns the client's failures into backend_unavailable: the transport's
// (timeout, disconnected, closed, protocol) and error replies (OOM, BUSY, LOADING, READONLY, or
// a bug in a script). operation_aborted (the caller's cancellation) passes through.
awaitable<redis::reply> backend_call(awaitable<redis::reply> op, const std::string& what) {
  redis::reply r;
  try {
    r = co_await std::move(op);
  } catch (const redis::error& e) {
    throw backend_unavailable(what + ": " + e.what());
  }
  if (r.is_error()) throw backend_unavailable(what + ": redis answered " + r.error_message());
  co_return r;
}

awaitable<bool> caller_gone() {
  auto state = co_await net::this_coro::cancellation_state;
  co_return state.cancelled() != net::cancellation_type::none;
}

bool is_aborted(const boost::system::system_error& e) {
  return e.code() == net::error::operation_aborted;
}

const std::string& tag_of(const redis::reply& r) {
  return r.as_array().at(0).as_string();
}

wall_clock::time_point wall_at(long long epoch_ms) {
  return wall_clock::time_point(std::chrono::duration_cast<wall_clock::duration>(millis{epoch_ms}));
}

[[noreturn]] void throw_too_many_primitives(const redis::reply& r, std::size_t max) {
  const long long retry = r.as_array().at(1).as_integer();
  throw primitive_error(primitive_errc::too_many_primitives,
                        std::to_string(max) + " primitives exist, the server's limit",
                        retry >= 0 ? std::optional<millis>(millis{retry}) : std::nullopt);
}

std::string kind_of(bool lock) {
  return lock ? "lock" : "sem";
}

std::string what_of(bool lock) {
  return lock ? "lock " : "semaphore ";
}

// (Variadic, not a braced list: g++ 12 mishandles braced lists inside coroutines.)
template <class... S>
std::vector<std::string> strings(S&&... values) {
  std::vector<std::string> out;
  out.reserve(sizeof...(values));
  (out.emplace_back(std::forward<S>(values)), ...);
  return out;
}

// Decrements an atomic counter when a scope ends, exceptions included.
struct counted {
  explicit counted(std::atomic<std::size_t>& c) : count(c) { ++count; }
  ~counted() { --count; }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;
  std::atomic<std::size_t>& count;
};

}  // namespace

struct redis_semaphores::names {
  std::string name;
  bool lock = false;
  std::string member;   // in the registry: "lock:NAME", "sem:NAME"
  std::string tagged;   // "<prefix>:{sem:NAME}": the hash tag keeps its keys in one slot
  std::string channel;  // its wake-ups
};

redis_semaphores::lua::lua(std::string n, std::string s)
    : name(std::move(n)), source(std::move(s)), script(source) {}

redis_semaphores::redis_semaphores(executor io, redis::connection& commands, redis_wakeups& wakeups,
                                   redis_semaphores_config config)
    : io_(std::move(io)),
      conn_(commands),
      wakeups_(wakeups),
      config_(std::move(config)),
      acquire_("semaphore.acquire", script_text(semaphore_lua::acquire)),
      leave_("semaphore.leave", script_text(semaphore_lua::leave)),
      release_("semaphore.release", script_text(semaphore_lua::release)),
      keepalive_("semaphore.keepalive", script_text(semaphore_lua::keepalive)),
      put_("semaphore.put", script_text(semaphore_lua::put)),
      get_("semaphore.get", script_text(semaphore_lua::get)),
      remove_("semaphore.remove", script_text(semaphore_lua::remove)) {}

redis_semaphores::~redis_semaphores() = default;

awaitable<void> redis_semaphores::start() {
  for (const lua* s : scripts()) {
    const redis::reply r =
        co_await backend_call(conn_.command("SCRIPT", "LOAD", s->source), "SCRIPT LOAD " + s->name);
    if (r.as_string() != s->script.sha1())
      throw backend_unavailable("SCRIPT LOAD " + s->name + ": unexpected SHA1 " + r.as_string());
  }
}

awaitable<void> redis_semaphores::shutdown() {
  stopped_ = true;
  wakeups_.wake_all();
  net::steady_timer pause(co_await net::this_coro::executor);
  while (running_.load() > 0) {
    pause.expires_after(millis{5});
    co_await pause.async_wait(net::use_awaitable);
  }
}

std::vector<const redis_semaphores::lua*> redis_semaphores::scripts() const {
  return {&acquire_, &leave_, &release_, &keepalive_, &put_, &get_, &remove_};
}

redis_semaphores::names redis_semaphores::names_for(const std::string& name, bool lock) const {
  names n;
  n.name = name;
  n.lock = lock;
  n.member = kind_of(lock) + ":" + name;
  n.tagged = config_.prefix + ":{" + n.member + "}";
  n.channel = wakeups_.channel(kind_of(lock), name);
  return n;
}

std::vector<std::string> redis_semaphores::keys_of(const names& n) const {
  std::vector<std::string> keys;
  for (const char* part : {":meta", ":holders", ":grants", ":line", ":beats"})
    keys.push_back(n.tagged + part);
  keys.push_back(config_.prefix + ":primitives");
  keys.push_back(config_.prefix + ":fencing");
  return keys;
}

std::vector<std::string> redis_semaphores::common_args(const names& n) const {
  std::vector<std::string> args;
  args.push_back(n.member);
  args.push_back(n.channel);
  args.push_back(std::to_string(config_.idle_timeout.count()));
  return args;
}

awaitable<redis::reply> redis_semaphores::run(const lua& script, const names& n,
                                              std::vector<std::string> more) {
  auto args = common_args(n);
  args.insert(args.end(), std::make_move_iterator(more.begin()),
              std::make_move_iterator(more.end()));
  co_return co_await backend_call(script.script.run(conn_, keys_of(n), std::move(args)),
                                  script.name);
}

semaphore_info redis_semaphores::info_of(const std::string& name, const redis::reply& r) const {
  const auto& e = r.as_array();
  const auto steady_now = steady_clock::now();
  const long long redis_now = e.at(1).as_integer();
  semaphore_info info;
  info.name = name;
  info.permits = static_cast<std::size_t>(e.at(2).as_integer());
  info.waiters = static_cast<std::size_t>(e.at(3).as_integer());
  for (std::size_t i = 4; i + 4 < e.size(); i += 5) {
    permit p;
    p.id = e[i].as_string();
    p.holder = e[i + 1].as_string();
    p.fencing_token = static_cast<std::uint64_t>(e[i + 2].as_integer());
    p.count = static_cast<std::uint32_t>(e[i + 3].as_integer());
    const long long ends = e[i + 4].as_integer();
    p.expires = steady_now + millis{ends - redis_now};
    p.expires_at = wall_at(ends);
    info.holders.push_back(std::move(p));
  }
  std::sort(info.holders.begin(), info.holders.end(),
            [](const permit& a, const permit& b) { return a.fencing_token < b.fencing_token; });
  info.available = info.holders.size() >= info.permits ? 0 : info.permits - info.holders.size();
  return info;
}

awaitable<semaphore_info> redis_semaphores::put_semaphore(std::string name, std::size_t permits) {
  const names n = names_for(name, false);
  auto args = strings(std::to_string(permits), job_id::random().to_string(),
                      std::to_string(config_.max_primitives));
  const redis::reply r = co_await run(put_, n, std::move(args));
  if (tag_of(r) == "too_many_primitives") throw_too_many_primitives(r, config_.max_primitives);
  co_return info_of(name, r);
}

awaitable<semaphore_info> redis_semaphores::put_lock(std::string name) {
  const names n = names_for(name, true);
  auto args = strings("", job_id::random().to_string(), std::to_string(config_.max_primitives));
  const redis::reply r = co_await run(put_, n, std::move(args));
  if (tag_of(r) == "too_many_primitives") throw_too_many_primitives(r, config_.max_primitives);
  co_return info_of(name, r);
}

awaitable<semaphore_info> redis_semaphores::get_semaphore(std::string name, bool lock) {
  const names n = names_for(name, lock);
  const redis::reply r = co_await run(get_, n, std::vector<std::string>());
  if (tag_of(r) == "absent") {
    // A lock never used (or forgotten) is free; a read makes nothing.
    if (lock) co_return semaphore_info{name, 1, 1, 0, {}};
    throw primitive_error(primitive_errc::not_found, "no semaphore " + name);
  }
  co_return info_of(name, r);
}

awaitable<permit> redis_semaphores::acquire(std::string name, bool lock, acquire_request request,
                                            millis wait) {
  // A strand of its own: the waiter's watch delivers wake-ups there.
  return net::co_spawn(
      net::make_strand(io_),
      [this, name = std::move(name), lock, request = std::move(request),
       wait]() mutable -> awaitable<permit> {
        co_return co_await acquire_here(std::move(name), lock, std::move(request), wait);
      },
      net::use_awaitable);
}

awaitable<permit> redis_semaphores::acquire_here(std::string name, bool lock,
                                                 acquire_request request, millis wait) {
  co_await net::this_coro::throw_if_cancelled(false);
  const counted running(running_);
  const names n = names_for(name, lock);
  const std::string waiter = job_id::random().to_string();
  const std::string proposed = job_id::random().to_string();  // the id of a new grant
  const std::string new_gen = job_id::random().to_string();   // if this call creates it
  const auto deadline = steady_clock::now() + wait;
  const bool may_wait = wait.count() > 0;
  // Registered before the first attempt: a wake-up published after it is not missed.
  auto watch = wakeups_.watch_channel(n.channel, waiter, co_await net::this_coro::executor);

  // Leaves the line and gives back a permit granted in the instant the caller left. Best
  // effort: if Redis cannot be reached, the waiter's heartbeat and the lease end them.
  auto give_up = [&]() -> awaitable<void> {
    if (co_await caller_gone()) co_await net::this_coro::reset_cancellation_state();
    try {
      co_await run(leave_, n, strings(waiter, proposed));
    } catch (const std::exception&) {
    }
  };
  auto timed_out = [&] {
    return primitive_error(
        primitive_errc::acquire_timeout,
        "no permit of " + name + " within " + std::to_string(wait.count()) + " ms");
  };
  auto caller_left = [] {
    return primitive_error(primitive_errc::acquire_timeout, "the caller left");
  };

  std::string gen;  // the incarnation seen by the first attempt; retries expect it
  for (;;) {
    auto args = strings((lock && gen.empty()) ? "1" : "0", new_gen, gen,
                        std::to_string(config_.max_primitives), proposed, request.holder,
                        std::to_string(request.ttl.count()), request.reentrant ? "1" : "0", waiter,
                        may_wait ? "1" : "0", std::to_string(config_.waiter_heartbeat.count()),
                        std::to_string(config_.max_waiters));
    redis::reply r;
    bool aborted = false;
    try {
      r = co_await run(acquire_, n, std::move(args));
    } catch (const boost::system::system_error& e) {
      if (!is_aborted(e)) throw;
      aborted = true;  // the caller left while the script ran (or not): undo it either way
    }
    if (aborted || co_await caller_gone()) {
      co_await give_up();
      throw caller_left();
    }
    const auto& e = r.as_array();
    const std::string& tag = e.at(0).as_string();
    if (tag == "granted") {
      permit p;
      p.id = e.at(1).as_string();
      p.holder = request.holder;
      p.fencing_token = static_cast<std::uint64_t>(e.at(2).as_integer());
      p.count = static_cast<std::uint32_t>(e.at(3).as_integer());
      p.expires_at = wall_at(e.at(4).as_integer());
      p.expires = steady_clock::now() + millis{e.at(5).as_integer()};
      co_return p;
    }
    if (tag == "not_found")
      throw primitive_error(primitive_errc::not_found, "no semaphore " + name);
    if (tag == "gone") {
      throw primitive_error(primitive_errc::acquire_timeout,
                            what_of(lock) + name + " was deleted while waiting");
    }
    if (tag == "too_many_primitives") throw_too_many_primitives(r, config_.max_primitives);
    if (tag == "too_many_waiters") {
      throw primitive_error(primitive_errc::too_many_waiters,
                            name + " already has " + std::to_string(e.at(1).as_integer()) +
                                " waiters, the server's limit");
    }
    if (tag == "busy") throw timed_out();
    if (tag != "waiting") throw backend_unavailable("acquire: unexpected answer " + r.describe());
    gen = e.at(2).as_string();

    const auto now = steady_clock::now();
    if (stopped_ || now >= deadline) {
      co_await give_up();
      throw timed_out();
    }
    auto wake_at = std::min(deadline, now + config_.recheck);
    if (const long long next_end = e.at(1).as_integer(); next_end >= 0)
      wake_at = std::min(wake_at, now + millis{next_end + 1});  // that lease ends: try then
    {
      const counted waiting(waiting_);
      co_await watch->wait_until(wake_at);
    }
    if (co_await caller_gone()) {
      co_await give_up();
      throw caller_left();
    }
  }
}

awaitable<std::uint32_t> redis_semaphores::release(std::string name, bool lock,
                                                   std::string permit_id) {
  const names n = names_for(name, lock);
  const redis::reply r = co_await run(release_, n, strings(permit_id));
  const long long left = r.as_integer();
  if (left < 0) {
    throw primitive_error(primitive_errc::not_held,
                          "permit " + permit_id + " is not held (unknown, expired or released)");
  }
  co_return static_cast<std::uint32_t>(left);
}

awaitable<permit> redis_semaphores::keepalive(std::string name, bool lock, std::string permit_id,
                                              millis ttl) {
  const names n = names_for(name, lock);
  const redis::reply r =
      co_await run(keepalive_, n, strings(permit_id, std::to_string(ttl.count())));
  if (tag_of(r) != "held") {
    throw primitive_error(primitive_errc::not_held, "permit " + permit_id + " is not held");
  }
  const auto& e = r.as_array();
  permit p;
  p.id = permit_id;
  p.fencing_token = static_cast<std::uint64_t>(e.at(1).as_integer());
  p.count = static_cast<std::uint32_t>(e.at(2).as_integer());
  p.holder = e.at(3).as_string();
  p.expires_at = wall_at(e.at(4).as_integer());
  p.expires = steady_clock::now() + millis{e.at(5).as_integer()};
  co_return p;
}

awaitable<void> redis_semaphores::remove_semaphore(std::string name, bool lock) {
  const names n = names_for(name, lock);
  const redis::reply r = co_await run(remove_, n, std::vector<std::string>());
  if (r.as_integer() == 0)
    throw primitive_error(primitive_errc::not_found, "no " + what_of(lock) + name);
}

}  // namespace gatherd::core
