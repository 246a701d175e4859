#include "libcore/notifier.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>

namespace gatherd::core {

namespace {
// Keeps a waiter listed exactly as long as its timer lives, however the wait ends.
struct listing {
  std::vector<net::steady_timer*>& list;
  net::steady_timer* timer;
  listing(std::vector<net::steady_timer*>& l, net::steady_timer* t) : list(l), timer(t) {
    list.push_back(timer);
  }
  ~listing() {
    if (auto it = std::find(list.begin(), list.end(), timer); it != list.end()) list.erase(it);
  }
};
}  // namespace

awaitable<void> notifier::wait_until(steady_clock::time_point deadline) {
  net::steady_timer timer(co_await net::this_coro::executor, deadline);
  listing listed(waiters_, &timer);
  co_await timer.async_wait(net::as_tuple(net::use_awaitable));
}

void notifier::notify_all() {
  for (auto* timer : waiters_) timer->cancel();
  waiters_.clear();
}

}  // namespace gatherd::core
