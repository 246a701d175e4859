#include "libcore/primitives/semaphore.hpp"

#include <algorithm>

#include "libcore/job_id.hpp"
#include "libcore/primitives/primitive_error.hpp"

namespace gatherd::core {

namespace {
[[noreturn]] void throw_not_held(const std::string& permit_id) {
  throw primitive_error(primitive_errc::not_held,
                        "permit " + permit_id + " is not held (unknown, expired or released)");
}
}  // namespace

void semaphore::set_permits(std::size_t permits, steady_clock::time_point now) {
  permits_ = permits;
  serve_waiters(now);
}

std::optional<permit> semaphore::try_acquire(const acquire_request& request,
                                             steady_clock::time_point now) {
  if (request.reentrant) {
    auto it = std::find_if(holders_.begin(), holders_.end(),
                           [&](const permit& p) { return p.holder == request.holder; });
    if (it != holders_.end()) {  // the holder again: the same permit, one more count
      ++it->count;
      it->expires = std::max(it->expires, now + request.ttl);
      it->expires_at = std::max(it->expires_at, wall_clock::now() + request.ttl);
      return *it;
    }
  }
  if (available() == 0 || !waiters_.empty()) return std::nullopt;  // FIFO: no overtaking
  return grant(request, now);
}

permit semaphore::grant(const acquire_request& request, steady_clock::time_point now) {
  permit p;
  p.id = job_id::random().to_string();
  p.holder = request.holder;
  p.fencing_token = ++*tokens_;
  p.expires = now + request.ttl;
  p.expires_at = wall_clock::now() + request.ttl;
  holders_.push_back(p);
  return p;
}

void semaphore::serve_waiters(steady_clock::time_point now) {
  while (available() > 0 && !waiters_.empty()) {
    acquire_waiter* next = waiters_.front();
    waiters_.pop_front();
    next->granted = grant(next->request, now);
    if (next->wake) next->wake();
  }
}

std::vector<permit>::iterator semaphore::find(const std::string& permit_id) {
  return std::find_if(holders_.begin(), holders_.end(),
                      [&](const permit& p) { return p.id == permit_id; });
}

std::uint32_t semaphore::release(const std::string& permit_id, steady_clock::time_point now) {
  expire(now);  // a lease that ended is not held any more, even if no sweep ran yet
  auto it = find(permit_id);
  if (it == holders_.end()) throw_not_held(permit_id);
  if (--it->count > 0) return it->count;
  holders_.erase(it);
  serve_waiters(now);
  return 0;
}

permit semaphore::keepalive(const std::string& permit_id, millis ttl,
                            steady_clock::time_point now) {
  expire(now);
  auto it = find(permit_id);
  if (it == holders_.end()) throw_not_held(permit_id);
  it->expires = now + ttl;
  it->expires_at = wall_clock::now() + ttl;
  return *it;
}

std::size_t semaphore::expire(steady_clock::time_point now) {
  const auto ended = std::remove_if(holders_.begin(), holders_.end(),
                                    [&](const permit& p) { return p.expires <= now; });
  const auto count = static_cast<std::size_t>(holders_.end() - ended);
  holders_.erase(ended, holders_.end());
  if (count > 0) {
    if (expiries_) *expiries_ += count;
    serve_waiters(now);
  }
  return count;
}

std::optional<steady_clock::time_point> semaphore::next_expiry() const {
  if (holders_.empty()) return std::nullopt;
  return std::min_element(holders_.begin(), holders_.end(),
                          [](const permit& a, const permit& b) { return a.expires < b.expires; })
      ->expires;
}

std::vector<acquire_waiter*> semaphore::take_waiters() {
  std::vector<acquire_waiter*> out(waiters_.begin(), waiters_.end());
  waiters_.clear();
  return out;
}

}  // namespace gatherd::core
