#include "libcore/primitives/work_queue.hpp"

#include <algorithm>

#include "libcore/job_id.hpp"

namespace gatherd::core {

work_queue::~work_queue() {
  forget(bytes_);
}

put_blocker work_queue::blocker(std::size_t n, std::size_t bytes) const {
  if (ready_.size() + n > maxsize_) return put_blocker::count;
  if (bytes_ > max_bytes_ || bytes > max_bytes_ - bytes_) return put_blocker::bytes;
  if (shared_ && !shared_->has_room(bytes)) return put_blocker::shared_bytes;
  return put_blocker::none;
}

void work_queue::add(std::vector<queue_item>& items, std::size_t bytes) {
  for (auto& item : items) ready_.push_back(std::move(item));
  bytes_ += bytes;
  if (shared_) shared_->used.fetch_add(bytes, std::memory_order_relaxed);
}

void work_queue::forget(std::size_t bytes) {
  bytes_ -= bytes;
  if (shared_) shared_->used.fetch_sub(bytes, std::memory_order_relaxed);
}

bool work_queue::try_put(std::vector<queue_item>& items, std::size_t bytes) {
  if (!puts_.empty() || !fits(items.size(), bytes)) return false;
  add(items, bytes);
  serve(steady_clock::now());
  return true;
}

std::vector<delivery> work_queue::try_get(std::size_t max_items, millis lease,
                                          steady_clock::time_point now) {
  if (!gets_.empty()) return {};
  auto out = take(max_items, lease, now);
  if (!out.empty()) serve(now);  // room for waiting puts
  return out;
}

std::vector<delivery> work_queue::take(std::size_t max_items, millis lease_for,
                                       steady_clock::time_point now) {
  std::vector<delivery> out;
  while (out.size() < max_items && !ready_.empty()) {
    delivery d{job_id::random().to_string(), ready_.front().value};
    leases_.emplace(d.receipt, lease{std::move(ready_.front()), now + lease_for});
    ready_.pop_front();
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<std::string> work_queue::done(const std::vector<std::string>& receipts) {
  std::vector<std::string> unknown;
  for (const auto& receipt : receipts) {
    auto it = leases_.find(receipt);
    if (it == leases_.end()) {
      unknown.push_back(receipt);
      continue;
    }
    forget(it->second.item.bytes);
    leases_.erase(it);
  }
  serve(steady_clock::now());
  return unknown;
}

std::size_t work_queue::expire(steady_clock::time_point now) {
  std::vector<std::pair<steady_clock::time_point, queue_item>> back;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expires <= now) {
      back.emplace_back(it->second.expires, std::move(it->second.item));
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  // Redelivered first, in the order their leases ended.
  std::sort(back.begin(), back.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& [when, value] : back) ready_.push_front(std::move(value));
  if (!back.empty()) {
    if (expiries_) *expiries_ += back.size();
    serve(now);
  }
  return back.size();
}

void work_queue::give_back(const std::vector<delivery>& items) {
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    auto lease = leases_.find(it->receipt);
    if (lease == leases_.end()) continue;
    ready_.push_front(std::move(lease->second.item));
    leases_.erase(lease);
  }
  serve(steady_clock::now());
}

std::optional<steady_clock::time_point> work_queue::next_expiry() const {
  std::optional<steady_clock::time_point> first;
  for (const auto& [receipt, l] : leases_) {
    if (!first || l.expires < *first) first = l.expires;
  }
  return first;
}

void work_queue::set_limits(std::size_t maxsize, std::size_t max_bytes) {
  maxsize_ = maxsize;
  max_bytes_ = max_bytes;
  serve(steady_clock::now());
}

void work_queue::serve(steady_clock::time_point now) {
  bool progress = true;
  while (progress) {
    progress = false;
    while (!gets_.empty() && !ready_.empty()) {
      get_waiter* g = gets_.front();
      gets_.pop_front();
      g->got = take(g->max_items, g->lease, now);
      if (g->wake) g->wake();
      progress = true;
    }
    while (!puts_.empty() && fits(puts_.front()->items.size(), puts_.front()->bytes)) {
      put_waiter* p = puts_.front();
      puts_.pop_front();
      add(p->items, p->bytes);
      p->done = true;
      if (p->wake) p->wake();
      progress = true;
    }
  }
  if (unfinished() == 0) {
    auto joined = std::move(joins_);
    joins_.clear();
    for (join_waiter* j : joined) {
      j->done = true;
      if (j->wake) j->wake();
    }
  }
}

void work_queue::wake_all() {
  auto puts = std::move(puts_);
  auto gets = std::move(gets_);
  auto joins = std::move(joins_);
  puts_.clear();
  gets_.clear();
  joins_.clear();
  for (auto* w : puts)
    if (w->wake) w->wake();
  for (auto* w : gets)
    if (w->wake) w->wake();
  for (auto* w : joins)
    if (w->wake) w->wake();
}

}  // namespace gatherd::core
