#include "service/websocket/job_feed.hpp"

#include <algorithm>

#include "service/codec/job_codec.hpp"

namespace gatherd::service {

namespace {
bool remove_one(std::vector<job_feed::watcher*>& list, job_feed::watcher* w) {
  auto it = std::find(list.begin(), list.end(), w);
  if (it == list.end()) return false;
  list.erase(it);
  return true;
}
}  // namespace

void job_feed::publish(const core::job_record& job) {
  if (watches_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(mutex_);
  auto it = by_id_.find(job.id);
  if (all_.empty() && it == by_id_.end()) return;
  fmt::memory_buffer out;
  out.append(std::string_view(R"({"type":"job","job":)"));
  write_job(out, job.snapshot());
  out.push_back('}');
  auto message = std::make_shared<const std::string>(out.data(), out.size());
  for (watcher* w : all_) w->deliver(message);
  if (it == by_id_.end()) return;
  for (watcher* w : it->second) {
    // A session watching all jobs and this id hears of it once.
    if (std::find(all_.begin(), all_.end(), w) == all_.end()) w->deliver(message);
  }
}

void job_feed::watch(watcher& w, const core::job_id& id) {
  std::lock_guard lock(mutex_);
  auto& list = by_id_[id];
  if (std::find(list.begin(), list.end(), &w) != list.end()) return;
  list.push_back(&w);
  changed(1);
}

void job_feed::unwatch(watcher& w, const core::job_id& id) {
  std::lock_guard lock(mutex_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || !remove_one(it->second, &w)) return;
  if (it->second.empty()) by_id_.erase(it);
  changed(-1);
}

void job_feed::watch_all(watcher& w, bool on) {
  std::lock_guard lock(mutex_);
  const bool listed = std::find(all_.begin(), all_.end(), &w) != all_.end();
  if (on && !listed) {
    all_.push_back(&w);
    changed(1);
  } else if (!on && listed) {
    remove_one(all_, &w);
    changed(-1);
  }
}

void job_feed::forget(watcher& w, const std::vector<core::job_id>& ids) {
  for (const auto& id : ids) unwatch(w, id);
  watch_all(w, false);
}

}  // namespace gatherd::service
