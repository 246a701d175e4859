// One caller waiting for its reply, with a deadline. Its timer expires at the deadline and is
// cancelled once the reply (or a failure) is in, so one wait covers the three ways it can end,
// plus the caller's own cancellation. Strand only, like everything of the connection it is in.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <optional>

#include "libcore/asio.hpp"
#include "libcore/clock.hpp"
#include "libcore/redis/error.hpp"
#include "libcore/redis/reply.hpp"

namespace gatherd::core::redis {

struct pending_reply {
  enum class outcome { answered, failed, timed_out, cancelled };

  pending_reply(const executor& ex, steady_clock::time_point deadline) : timer(ex, deadline) {}

  bool settled() const { return answer.has_value() || failure.has_value(); }

  void settle(reply r) {
    if (settled() || abandoned) return;
    answer = std::move(r);
    timer.cancel();
  }
  void fail(error e) {
    if (settled() || abandoned) return;
    failure = std::move(e);
    timer.cancel();
  }

  // Waits for the reply, the deadline or the caller's cancellation, whichever comes first.
  // Anything but `answered` and `failed` marks it abandoned: its reply, when it comes, is
  // dropped by whoever reads it (the stream stays in step).
  awaitable<outcome> wait() {
    const auto [ec] = co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    // A reply wins even if the deadline passed meanwhile: it is here.
    if (answer) co_return outcome::answered;
    if (failure) co_return outcome::failed;
    abandoned = true;
    co_return ec ? outcome::cancelled : outcome::timed_out;
  }

  net::steady_timer timer;
  std::optional<reply> answer;
  std::optional<error> failure;
  bool abandoned = false;
};

}  // namespace gatherd::core::redis
