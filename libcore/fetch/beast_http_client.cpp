#include "libcore/fetch/beast_http_client.hpp"

#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <functional>
#include <optional>
#include <sstream>

#include "libcore/fetch/connection_pool.hpp"
#include "libcore/fetch/http_syntax.hpp"
#include "libcore/fetch/url.hpp"

namespace gatherd::core::fetch {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

constexpr std::uint32_t header_block_limit = 64 * 1024;
constexpr std::size_t first_read_chunk = 4 * 1024;
constexpr std::size_t read_chunk = 64 * 1024;

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

// ---- requests ------------------------------------------------------------------------------

void validate(const http_request& r) {
  if (!is_token(r.method)) throw fetch_error("invalid_request", "invalid method");
  for (const auto& [name, value] : r.headers) {
    if (!is_token(name)) throw fetch_error("invalid_request", "invalid header name");
    if (!is_field_value(value)) {
      throw fetch_error("invalid_request", "invalid value for header " + name);
    }
  }
}

// What may change from one redirect hop to the next.
struct hop {
  std::string method;
  header_list headers;
  std::string body;
};

void erase_headers(header_list& headers, std::initializer_list<std::string_view> names) {
  std::erase_if(headers, [&](const auto& h) {
    return std::any_of(names.begin(), names.end(), [&](auto n) { return iequals(h.first, n); });
  });
}

const std::string* find_header(const header_list& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return &v;
  }
  return nullptr;
}

http::request<http::string_body> build_request(const http_client_config& config, const fetch_url& t,
                                               const hop& h) {
  http::request<http::string_body> r;
  r.method_string(h.method);
  r.target(t.path);
  r.version(11);
  for (const auto& [name, value] : h.headers) {
    // The body is framed here, never by the caller: a conflicting length would smuggle.
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) continue;
    r.insert(name, value);
  }
  if (r.find(http::field::host) == r.end()) r.set(http::field::host, t.host_header);
  if (r.find(http::field::user_agent) == r.end() && !config.user_agent.empty()) {
    r.set(http::field::user_agent, config.user_agent);
  }
  if (!h.body.empty() || h.method == "POST" || h.method == "PUT" || h.method == "PATCH") {
    r.body() = h.body;
    r.content_length(h.body.size());
  }
  // The last check before bytes leave: whatever produced them (the URL, a redirect's Location,
  // the caller's headers), nothing here may end a line or split the request.
  if (!is_origin_form(t.path)) throw fetch_error("invalid_url", "the request target is not origin-form");
  for (const auto& field : r) {
    if (!is_field_value(field.value())) {
      throw fetch_error("invalid_url", "a header value holds a control character");
    }
  }
  return r;
}

// ---- connections ---------------------------------------------------------------------------

class connection {
 public:
  connection(const executor& io, std::shared_ptr<ssl::context> tls,
             std::shared_ptr<http_client_stats> stats)
      : context_(std::move(tls)), stats_(std::move(stats)) {
    if (context_) {
      tls_.emplace(io, *context_);
    } else {
      plain_.emplace(io);
    }
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() { close(); }

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }

  // Moves an idle plain connection to the io_context of the request that reuses it, so that
  // its I/O does not bounce between threads. A TLS stream stays where it was opened.
  void rehome(const executor& io) {
    if (!plain_ || &net::query(io, net::execution::context) ==
                       &net::query(plain_->get_executor(), net::execution::context)) {
      return;
    }
    error_code ec;
    const auto protocol = plain_->local_endpoint(ec).protocol();
    if (ec) return;
    const auto handle = plain_->release(ec);
    if (ec) return;
    plain_.emplace(io);
    plain_->assign(protocol, handle, ec);
    if (ec) ::close(handle);  // plain_ stays closed: the exchange fails and is retried fresh
  }
  ssl::stream<tcp::socket>* tls() { return tls_ ? &*tls_ : nullptr; }
  tcp::socket* plain() { return plain_ ? &*plain_ : nullptr; }

  void opened() {
    counted_ = true;
    ++stats_->connections_opened;
    ++stats_->connections_open;
  }

  // Abandons the connection: any operation in progress ends with an error.
  void close() {
    error_code ignored;
    socket().close(ignored);
    if (counted_) {
      counted_ = false;
      --stats_->connections_open;
    }
  }

  beast::flat_buffer buffer;  // bytes read past the last response

 private:
  std::shared_ptr<ssl::context> context_;  // declared first: outlives the stream
  std::optional<tcp::socket> plain_;
  std::optional<ssl::stream<tcp::socket>> tls_;
  std::shared_ptr<http_client_stats> stats_;
  bool counted_ = false;
};

using pool_type = connection_pool<connection>;

// ---- one attempt: deadline and cancellation ------------------------------------------------

enum class expiry { none, timeout, connect };

// Lives on the caller's executor. A watchdog timer aborts the step in progress (closes the
// socket, cancels the DNS or pool wait) when the deadline passes: unlike per-operation
// cancellation this also stops a DNS lookup and every layer of a TLS stream.
struct attempt_state : std::enable_shared_from_this<attempt_state> {
  attempt_state(const executor& ex, net::cancellation_state cs, millis timeout)
      : timer(ex), cancel_state(cs), timeout(timeout), deadline(steady_clock::now() + timeout) {}

  void arm(steady_clock::time_point at, expiry kind) {
    const unsigned g = ++generation;
    timer.expires_at(at);
    timer.async_wait([self = shared_from_this(), g, kind](error_code ec) {
      if (ec || g != self->generation || self->fired != expiry::none) return;
      self->fired = kind;
      if (self->abort) self->abort();
    });
  }

  void disarm() {
    ++generation;
    timer.cancel();
  }

  bool cancelled() const { return cancel_state.cancelled() != net::cancellation_type::none; }
  bool interrupted() const { return fired != expiry::none || cancelled(); }

  net::steady_timer timer;
  net::cancellation_state cancel_state;
  millis timeout;
  steady_clock::time_point deadline;
  std::function<void()> abort;  // ends the step in progress; set while one runs
  expiry fired = expiry::none;
  unsigned generation = 0;
};

// Registers how to abort the current step, for as long as it runs.
class abort_scope {
 public:
  abort_scope(attempt_state& st, std::function<void()> f) : st_(&st) { st.abort = std::move(f); }
  abort_scope(const abort_scope&) = delete;
  abort_scope& operator=(const abort_scope&) = delete;
  ~abort_scope() { reset(); }
  void reset() {
    if (st_) st_->abort = nullptr;
    st_ = nullptr;
  }

 private:
  attempt_state* st_;
};

// Turns a failed step into the error the caller sees: the deadline and cancellation win over
// whatever error the aborted operation reported.
[[noreturn]] void fail(const attempt_state& st, const std::string& type, const std::string& what) {
  if (st.fired == expiry::timeout) {
    throw fetch_error("timeout",
                      "no response within " + std::to_string(st.timeout.count()) + " ms");
  }
  if (st.fired == expiry::connect) throw fetch_error("connect", "connect timed out");
  if (st.cancelled()) throw boost::system::system_error(net::error::operation_aborted);
  throw fetch_error(type, what);
}

// ---- the client ----------------------------------------------------------------------------

std::shared_ptr<ssl::context> make_tls_context(const http_client_config& config) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  if (config.ca_file.empty()) {
    ctx->set_default_verify_paths();
  } else {
    ctx->load_verify_file(config.ca_file);
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

struct client_core {
  client_core(executor io_, http_client_config config_)
      : io(std::move(io_)),
        config(std::move(config_)),
        tls(make_tls_context(config)),
        pool(std::make_shared<pool_type>(pool_limits{
            config.max_connections, config.max_connections_per_origin, config.idle_timeout})),
        sweeper(io) {}

  // The sweep runs only while there are idle connections, so that it does not keep
  // io_context::run() from returning once the work is done.
  static void ensure_sweeping(const std::shared_ptr<client_core>& core) {
    if (core->closed || core->sweeping.exchange(true)) return;
    const auto interval = std::clamp(core->config.idle_timeout / 4, millis{10}, millis{1000});
    core->sweeper.expires_after(interval);
    core->sweeper.async_wait([weak = std::weak_ptr<client_core>(core)](error_code ec) {
      auto self = weak.lock();
      if (!self) return;
      self->sweeping = false;
      if (ec || self->closed) return;
      self->pool->sweep();
      if (self->pool->idle_count() > 0) ensure_sweeping(self);
    });
  }

  executor io;
  http_client_config config;
  std::shared_ptr<ssl::context> tls;
  std::shared_ptr<http_client_stats> stats = std::make_shared<http_client_stats>();
  std::shared_ptr<pool_type> pool;
  net::steady_timer sweeper;
  std::atomic<bool> sweeping{false};
  std::atomic<bool> closed{false};
};

awaitable<std::vector<tcp::endpoint>> resolve(client_core& core, attempt_state& st,
                                              const fetch_url& t) {
  // The lookup completes through a channel: a timeout or a cancellation ends the wait at
  // once, whereas getaddrinfo cannot be interrupted.
  using results = tcp::resolver::results_type;
  using channel = net::experimental::concurrent_channel<void(error_code, results)>;
  auto ex = co_await net::this_coro::executor;
  auto ch = std::make_shared<channel>(ex, 1);
  auto resolver = std::make_shared<tcp::resolver>(core.io);
  resolver->async_resolve(t.host, std::to_string(t.port), tcp::resolver::numeric_service,
                          [ch, resolver](error_code ec, results r) { ch->try_send(ec, r); });
  abort_scope scope(st, [ch] { ch->cancel(); });
  auto [ec, r] = co_await ch->async_receive(net::as_tuple(net::use_awaitable));
  if (ec) fail(st, "dns", "could not resolve " + t.host + ": " + ec.message());
  std::vector<tcp::endpoint> endpoints;
  for (const auto& entry : r) endpoints.push_back(entry.endpoint());
  co_return endpoints;
}

awaitable<void> connect(attempt_state& st, connection& c,
                        const std::vector<tcp::endpoint>& endpoints) {
  // One endpoint after the other, by hand: the range async_connect would reopen the socket
  // that the watchdog closed and go on without a deadline.
  std::string why = "no address";
  for (const auto& endpoint : endpoints) {
    if (st.interrupted()) break;
    error_code ec;
    auto& socket = c.socket();
    socket.close(ec);
    socket.open(endpoint.protocol(), ec);
    if (!ec) {
      auto [connect_ec] =
          co_await socket.async_connect(endpoint, net::as_tuple(net::use_awaitable));
      ec = connect_ec;
    }
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);
      c.opened();
      co_return;
    }
    std::ostringstream out;
    out << "could not connect to " << endpoint << ": " << ec.message();
    why = out.str();
  }
  fail(st, "connect", why);
}

awaitable<void> handshake(attempt_state& st, connection& c, const fetch_url& t) {
  auto& stream = *c.tls();
  if (!t.literal && !SSL_set_tlsext_host_name(stream.native_handle(), t.host.c_str())) {
    fail(st, "tls", "cannot set the TLS server name " + t.host);
  }
  stream.set_verify_mode(ssl::verify_peer);
  stream.set_verify_callback(ssl::host_name_verification(t.host));
  auto [ec] =
      co_await stream.async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  if (ec) fail(st, "tls", "TLS handshake with " + t.host + " failed: " + ec.message());
}

awaitable<std::unique_ptr<connection>> open_connection(client_core& core, attempt_state& st,
                                                       const fetch_url& t) {
  const auto connect_deadline =
      std::min(st.deadline, steady_clock::now() + core.config.connect_timeout);
  const bool connect_first = connect_deadline < st.deadline;
  if (connect_first) st.arm(connect_deadline, expiry::connect);

  std::vector<tcp::endpoint> endpoints;
  if (t.literal) {
    endpoints.emplace_back(*t.literal, t.port);
  } else {
    endpoints = co_await resolve(core, st, t);
  }
  const auto decision = check_egress(core.config.egress, t.host, endpoints);
  if (decision.allowed.empty()) {
    ++core.stats->egress_denied;
    throw fetch_error("fetch_denied", egress_denied_message(t.host));
  }

  // On the request's own executor: the socket's I/O completes on the caller's thread.
  // No co_await or ?: inside the argument list: g++ 12 destroyed the shared_ptr temporary of
  // such a full-expression twice (ASan: use-after-free of the ssl::context).
  auto ex = co_await net::this_coro::executor;
  std::shared_ptr<ssl::context> tls;
  if (t.tls) tls = core.tls;
  auto c = std::make_unique<connection>(ex, std::move(tls), core.stats);
  {
    abort_scope scope(st, [p = c.get()] { p->close(); });
    co_await connect(st, *c, decision.allowed);
    if (t.tls) co_await handshake(st, *c, t);
  }
  if (connect_first) st.arm(st.deadline, expiry::timeout);
  co_return c;
}

struct exchange_result {
  http_response response;
  bool reusable = false;
  bool stale = false;  // a pooled connection failed before any byte of the response arrived
};

template <class Stream>
awaitable<exchange_result> perform(Stream& stream, connection& c, attempt_state& st,
                                   http::request<http::string_body>& request, std::size_t cap,
                                   bool may_retry) {
  exchange_result out;
  auto [write_ec, written] =
      co_await http::async_write(stream, request, net::as_tuple(net::use_awaitable));
  if (write_ec) {
    out.stale = may_retry && !st.interrupted();
    if (out.stale) co_return out;
    fail(st, "connect", "sending the request failed: " + write_ec.message());
  }

  http::response_parser<http::buffer_body> parser;
  parser.header_limit(header_block_limit);
  parser.body_limit(boost::none);  // the body is capped below, by cutting rather than failing
  if (request.method() == http::verb::head) parser.skip(true);
  auto [header_ec, header_bytes] =
      co_await http::async_read_header(stream, c.buffer, parser, net::as_tuple(net::use_awaitable));
  if (header_ec) {
    out.stale = may_retry && !parser.got_some() && c.buffer.size() == 0 && !st.interrupted();
    if (out.stale) co_return out;
    if (header_ec == http::error::header_limit) {
      fail(st, "protocol", "the response header block exceeds 64 KiB");
    }
    fail(st, "protocol", "reading the response failed: " + header_ec.message());
  }
  const auto& message = parser.get();
  out.response.status = message.result_int();
  for (const auto& field : message) {
    out.response.headers.emplace_back(field.name_string(), field.value());
  }

  // Read at most cap + 1 bytes: the extra byte tells a body of exactly `cap` from a longer one.
  // The buffer grows with the body (exactly once when its length is known): a fixed 64 KiB
  // chunk per response cost a zero-filled allocation, and its page faults, per small answer.
  std::string& body = out.response.body;
  const std::size_t limit = cap == SIZE_MAX ? cap : cap + 1;
  const auto length = parser.content_length();
  while (!parser.is_done()) {
    const std::size_t before = body.size();
    const std::size_t want = length ? std::max<std::size_t>(*length - before, 1)
                                    : std::clamp(before, first_read_chunk, read_chunk);
    const std::size_t room = std::min({want, read_chunk, limit - before});
    body.resize(before + room);
    parser.get().body().data = body.data() + before;
    parser.get().body().size = room;
    auto [ec, n] =
        co_await http::async_read(stream, c.buffer, parser, net::as_tuple(net::use_awaitable));
    body.resize(before + room - parser.get().body().size);
    if (ec == http::error::need_buffer) ec = {};
    if (ec == ssl::error::stream_truncated && parser.need_eof()) parser.put_eof(ec);
    if (ec) fail(st, "protocol", "reading the response body failed: " + ec.message());
    if (body.size() > cap) {
      body.resize(cap);
      out.response.truncated = true;
      break;
    }
  }
  // Anything but a complete response on a connection both sides keep alive is closed.
  out.reusable =
      parser.is_done() && parser.keep_alive() && request.keep_alive() && c.buffer.size() == 0;
  co_return out;
}

// One hop: a request and its response on a pooled or new connection, with one transparent
// retry on a fresh connection when a pooled one turns out to be dead (the peer closed it).
awaitable<http_response> exchange(std::shared_ptr<client_core> core,
                                  std::shared_ptr<attempt_state> st, const fetch_url& t,
                                  const hop& h, std::size_t cap) {
  auto request = build_request(core->config, t, h);
  for (int attempt = 0;; ++attempt) {
    if (st->interrupted()) fail(*st, "connect", "interrupted");
    pool_type::lease lease;
    try {
      lease = co_await core->pool->acquire(t.origin, attempt == 0, &st->abort);
    } catch (const boost::system::system_error&) {
      st->abort = nullptr;
      if (!st->interrupted()) throw;  // the client is shutting down: operation_aborted
    }
    if (st->interrupted()) {
      lease.release(true);  // untouched: a pooled connection goes back, a slot is freed
      fail(*st, "connect", "interrupted");
    }
    const bool reused = lease.reused();
    if (!reused) {
      auto fresh = co_await open_connection(*core, *st, t);
      lease.attach(std::move(fresh));
    }
    connection& c = *lease.connection();
    if (reused) {
      const auto here = co_await net::this_coro::executor;
      c.rehome(here);
    }
    exchange_result result;
    {
      abort_scope scope(*st, [&c] { c.close(); });
      if (auto* stream = c.tls()) {
        result = co_await perform(*stream, c, *st, request, cap, reused && attempt == 0);
      } else {
        result = co_await perform(*c.plain(), c, *st, request, cap, reused && attempt == 0);
      }
    }
    if (result.stale) continue;  // the lease closes the dead connection
    lease.release(result.reusable);
    if (result.reusable) client_core::ensure_sweeping(core);
    if (reused) ++core->stats->connections_reused;
    result.response.reused_connection = reused;
    result.response.url = t.url;
    co_return std::move(result.response);
  }
}

bool is_redirect(unsigned status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

awaitable<http_response> run_request(std::shared_ptr<client_core> core, http_request req) {
  validate(req);
  fetch_url t = parse_fetch_url(req.url);
  auto ex = co_await net::this_coro::executor;
  auto cs = co_await net::this_coro::cancellation_state;
  auto st = std::make_shared<attempt_state>(ex, cs, req.timeout);
  st->arm(st->deadline, expiry::timeout);
  struct disarm_on_exit {
    attempt_state& st;
    ~disarm_on_exit() { st.disarm(); }
  } disarm{*st};

  hop h{std::move(req.method), std::move(req.headers), std::move(req.body)};
  for (int redirects = 0;; ++redirects) {
    http_response response = co_await exchange(core, st, t, h, req.max_body_bytes);
    const std::string* location = find_header(response.headers, "location");
    if (req.max_redirects <= 0 || !is_redirect(response.status) || !location) {
      co_return response;
    }
    if (redirects >= req.max_redirects) {
      throw fetch_error("redirects", "more than " + std::to_string(req.max_redirects) +
                                         " redirects, last to " + *location);
    }
    fetch_url next = resolve_location(t, *location);
    const bool get_or_head = h.method == "GET" || h.method == "HEAD";
    if ((response.status == 303 && h.method != "HEAD") ||
        ((response.status == 301 || response.status == 302) && !get_or_head)) {
      h.method = "GET";
      h.body.clear();
      erase_headers(h.headers, {"content-type", "content-length", "transfer-encoding"});
    }
    if (next.origin != t.origin) {
      erase_headers(h.headers, {"authorization", "cookie", "proxy-authorization"});
    }
    t = std::move(next);
  }
}

class beast_http_client final : public http_client {
 public:
  explicit beast_http_client(std::shared_ptr<client_core> core) : core_(std::move(core)) {}
  beast_http_client(const beast_http_client&) = delete;
  beast_http_client& operator=(const beast_http_client&) = delete;

  ~beast_http_client() override {
    core_->closed = true;
    core_->pool->close();
  }

  awaitable<http_response> send(http_request request) override {
    // In the caller's coroutine, on its executor: the socket, the timers and the watchdog are
    // serialized by it, and a request costs no spawn and no hop between threads.
    return run_request(core_, std::move(request));
  }

  const http_client_stats& stats() const override { return *core_->stats; }

 private:
  std::shared_ptr<client_core> core_;
};

}  // namespace

std::unique_ptr<http_client> make_beast_http_client(executor io, http_client_config config) {
  return std::make_unique<beast_http_client>(
      std::make_shared<client_core>(std::move(io), std::move(config)));
}

}  // namespace gatherd::core::fetch
