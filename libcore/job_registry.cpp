#include "libcore/job_registry.hpp"

#include <algorithm>

namespace gatherd::core {

job_registry::record_ptr job_registry::find(const job_id& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

job_registry::record_ptr job_registry::find_by_key(const std::string& key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : find(it->second->id);
}

void job_registry::add(record_ptr job) {
  by_seq_.emplace_hint(by_seq_.end(), job->seq, job.get());  // seq only grows
  if (!job->idempotency_key.empty()) by_key_[job->idempotency_key] = job.get();
  job->registered = true;
  job->bytes = is_terminal(job->state) ? finished_bytes(*job) : core::unfinished_bytes(*job);
  (is_terminal(job->state) ? finished_bytes_ : unfinished_bytes_) += job->bytes;
  by_id_.emplace(job->id, std::move(job));
}

void job_registry::remove(const job_id& id) {
  drop(id);
}

void job_registry::drop(const job_id& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  job_record& job = *it->second;
  if (is_terminal(job.state)) --retained_;
  (is_terminal(job.state) ? finished_bytes_ : unfinished_bytes_) -= job.bytes;
  job.registered = false;
  by_seq_.erase(job.seq);
  if (!job.idempotency_key.empty()) {
    auto key = by_key_.find(job.idempotency_key);
    if (key != by_key_.end() && key->second == &job) by_key_.erase(key);
  }
  by_id_.erase(it);
}

void job_registry::retain(job_record& job, steady_clock::time_point expires_at) {
  if (!job.registered) return;  // deleted while it ran
  ++retained_;
  unfinished_bytes_ -= job.bytes;
  job.bytes = finished_bytes(job);
  finished_bytes_ += job.bytes;
  finish_order_.push_back(job.id);
  expiries_.emplace(expires_at, job.id);
  while ((retained_ > max_retained_ || bytes() > max_bytes_) && evict_oldest()) {
  }
}

bool job_registry::make_room(std::size_t incoming) {
  if (unfinished_bytes_ > max_bytes_ || incoming > max_bytes_ - unfinished_bytes_) return false;
  while (bytes() + incoming > max_bytes_ && evict_oldest()) {
  }
  return true;
}

bool job_registry::evict_oldest() {
  if (finish_order_.empty()) return false;
  job_id oldest = finish_order_.front();
  finish_order_.pop_front();
  drop(oldest);  // (an entry of a job already gone drops nothing)
  return true;
}

std::size_t job_registry::expire(steady_clock::time_point now) {
  std::size_t expired = 0;
  while (!expiries_.empty() && expiries_.top().first <= now) {
    job_id id = expiries_.top().second;
    expiries_.pop();
    if (is_current(id)) {
      drop(id);
      ++expired;
    }
  }
  while (!finish_order_.empty() && !is_current(finish_order_.front())) finish_order_.pop_front();
  return expired;
}

job_page job_registry::list(const job_query& query) const {
  auto matches = [&](const job_record& job) {
    if (query.state && job.state != *query.state) return false;
    if (query.kind && job.kind != *query.kind) return false;
    for (const auto& label : query.labels) {
      if (std::find(job.labels.begin(), job.labels.end(), label) == job.labels.end()) return false;
    }
    return true;
  };
  job_page page;
  if (query.limit == 0) return page;
  auto end = query.before_seq ? by_seq_.lower_bound(*query.before_seq) : by_seq_.end();
  for (auto it = std::make_reverse_iterator(end); it != by_seq_.rend(); ++it) {
    if (!matches(*it->second)) continue;
    if (page.jobs.size() == query.limit) {
      page.next = page.jobs.back().seq;
      break;
    }
    page.jobs.push_back(it->second->snapshot());
  }
  return page;
}

}  // namespace gatherd::core
