// Jobs by id, in creation order for listing, by idempotency key; retention of finished jobs
// by time, by count and by bytes (oldest finished evicted first), so memory stays bounded.
// Bytes are the payload of every job held (job_record.hpp: spec_bytes and friends), kept as
// running totals: counted once when a job is added and once when it finishes.
// Single-threaded: the engine calls it from its strand.
#pragma once

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <deque>
#include <limits>
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
  explicit job_registry(std::size_t max_retained,
                        std::size_t max_bytes = std::numeric_limits<std::size_t>::max())
      : max_retained_(max_retained), max_bytes_(max_bytes) {
    by_id_.reserve(std::min<std::size_t>(max_retained, std::size_t{1} << 18));
  }

  record_ptr find(const job_id& id) const;
  record_ptr find_by_key(const std::string& key) const;
  void add(record_ptr job);
  void remove(const job_id& id);

  // `job` has just finished: keep it until `expires_at`, then forget it. Evicts the oldest
  // finished jobs while more than `max_retained` are kept or more than `max_bytes` are held
  // (the job itself last: one whose own data does not fit is forgotten at once).
  void retain(job_record& job, steady_clock::time_point expires_at);
  // Room for `bytes` more of unfinished jobs (their spec_bytes): evicts the oldest finished
  // jobs as needed. False, evicting nothing, when unfinished jobs alone leave too little.
  bool make_room(std::size_t bytes);
  // Forgets finished jobs whose retention has passed; returns how many.
  std::size_t expire(steady_clock::time_point now);

  job_page list(const job_query& query) const;

  std::size_t size() const { return by_id_.size(); }
  std::size_t retained() const { return retained_; }
  std::size_t bytes() const { return unfinished_bytes_ + finished_bytes_; }
  std::size_t unfinished_bytes() const { return unfinished_bytes_; }
  std::size_t max_bytes() const { return max_bytes_; }

 private:
  bool is_current(const job_id& id) const { return by_id_.contains(id); }
  void drop(const job_id& id);
  bool evict_oldest();  // false when no finished job is left

  std::size_t max_retained_;
  std::size_t max_bytes_;
  std::size_t retained_ = 0;  // finished jobs kept
  std::size_t unfinished_bytes_ = 0, finished_bytes_ = 0;
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
