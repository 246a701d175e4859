// Jobs by id, in creation order for listing, by idempotency key; retention of finished jobs
// by time and by count (oldest finished evicted first), so memory stays bounded.
// Single-threaded: the engine calls it from its strand.
#pragma once

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "libcore/job_record.hpp"

namespace gatherd::core {

struct job_query {
  std::optional<job_state> state;
  std::optional<job_kind> kind;
  std::vector<std::pair<std::string, std::string>> labels;  // all must match
  std::size_t limit = 100;
  std::optional<std::uint64_t> before_seq;  // cursor: only jobs created before this one
};

struct job_page {
  std::vector<job_snapshot> jobs;     // newest first
  std::optional<std::uint64_t> next;  // cursor of the next page, if there is one
};

class job_registry {
 public:
  using record_ptr = std::shared_ptr<job_record>;

  // Sized up front for `max_retained` jobs (at most 262,144; a larger table grows as it fills):
  // no rehash of a large table pauses admissions while it fills.
  explicit job_registry(std::size_t max_retained) : max_retained_(max_retained) {
    by_id_.reserve(std::min<std::size_t>(max_retained, std::size_t{1} << 18));
  }

  record_ptr find(const job_id& id) const;
  record_ptr find_by_key(const std::string& key) const;
  void add(record_ptr job);
  void remove(const job_id& id);

  // `job` has just finished: keep it until `expires_at`, then forget it. Evicts the oldest
  // finished jobs while more than `max_retained` are kept.
  void retain(job_record& job, steady_clock::time_point expires_at);
  // Forgets finished jobs whose retention has passed; returns how many.
  std::size_t expire(steady_clock::time_point now);

  job_page list(const job_query& query) const;

  std::size_t size() const { return by_id_.size(); }
  std::size_t retained() const { return retained_; }

 private:
  bool is_current(const job_id& id) const { return by_id_.contains(id); }
  void drop(const job_id& id);

  std::size_t max_retained_;
  std::size_t retained_ = 0;                                          // finished jobs kept
  boost::unordered_flat_map<job_id, record_ptr, job_id_hash> by_id_;  // open addressing
  std::map<std::uint64_t, job_record*> by_seq_;
  std::unordered_map<std::string, job_record*> by_key_;
  // Both indexes below are lazy: entries of jobs already removed are skipped when reached.
  std::deque<job_id> finish_order_;
  using expiry = std::pair<steady_clock::time_point, job_id>;
  struct later_first {
    bool operator()(const expiry& a, const expiry& b) const { return a.first > b.first; }
  };
  std::priority_queue<expiry, std::vector<expiry>, later_first> expiries_;
};

}  // namespace gatherd::core
