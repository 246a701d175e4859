// Fans job state changes out to the WebSocket sessions that watch them, by id or all jobs.
// publish() runs on the engine strand; watches change from the I/O threads. A mutex guards the
// lists, and publish() skips it entirely while nobody watches anything.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "libcore/job_id.hpp"
#include "libcore/job_record.hpp"

namespace gatherd::service {

class job_feed {
 public:
  class watcher {
   public:
    virtual ~watcher() = default;
    // Called under the feed's lock, from the engine strand: must be quick and thread-safe.
    // `message` is the whole `{"type":"job","job":{...}}` text, shared by every watcher.
    virtual void deliver(std::shared_ptr<const std::string> message) = 0;
  };

  void publish(const core::job_record& job);

  void watch(watcher& w, const core::job_id& id);
  void unwatch(watcher& w, const core::job_id& id);
  void watch_all(watcher& w, bool on);
  // Ends every watch of `w` (ids it watched are listed by the caller); no delivery to `w`
  // starts after this returns.
  void forget(watcher& w, const std::vector<core::job_id>& ids);

 private:
  void changed(std::ptrdiff_t delta) { watches_.fetch_add(delta, std::memory_order_relaxed); }

  std::mutex mutex_;
  std::atomic<std::ptrdiff_t> watches_{0};  // ids watched plus watch-all sessions
  std::unordered_map<core::job_id, std::vector<watcher*>, core::job_id_hash> by_id_;
  std::vector<watcher*> all_;
};

}  // namespace gatherd::service
