#include "libcore/admission.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/system/system_error.hpp>

namespace gatherd::core {

std::unique_ptr<admission::ticket> admission::admit() {
  auto t = std::make_unique<ticket>();
  if (running_ < max_running_) {
    ++running_;
    t->granted_ = true;
  } else {
    t->wakeup_.emplace(executor_, steady_clock::time_point::max());
    t->queued_ = true;
    t->position_ = queue_.insert(queue_.end(), t.get());
  }
  return t;
}

awaitable<void> admission::wait(ticket& t) {
  if (!t.granted_) {
    if (t.queued_) co_await t.wakeup_->async_wait(net::as_tuple(net::use_awaitable));
    if (!t.granted_) {
      withdraw(t);  // cancelled while queued
      throw boost::system::system_error(net::error::operation_aborted);
    }
  }
}

void admission::withdraw(ticket& t) {
  if (!t.queued_) return;
  queue_.erase(t.position_);
  t.queued_ = false;
  t.wakeup_->cancel();
}

void admission::release(ticket& t) {
  if (!t.granted_) return;
  t.granted_ = false;
  released_.record(steady_clock::now());
  if (queue_.empty()) {
    --running_;
    return;
  }
  ticket* next = queue_.front();  // the slot passes on directly: FIFO, no barging
  queue_.pop_front();
  next->queued_ = false;
  next->granted_ = true;
  next->wakeup_->cancel();
}

}  // namespace gatherd::core
