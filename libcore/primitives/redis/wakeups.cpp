#include "libcore/primitives/redis/wakeups.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "libcore/redis/error.hpp"
#include "libcore/redis/subscriber.hpp"

namespace gatherd::core {

struct redis_wakeups::watch::entry {
  entry(std::string c, std::string i, executor strand)
      : channel(std::move(c)), id(std::move(i)), timer(strand) {}
  std::string channel;
  std::string id;
  net::steady_timer timer;  // on the owner's strand
  bool signalled = false;   // read and written on that strand only
};

// The map, shared with the subscriber's handlers (which may run until the subscriber is gone).
struct redis_wakeups::shared {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<std::shared_ptr<watch::entry>>> by_channel;

  static void signal(const std::shared_ptr<watch::entry>& e) {
    net::post(e->timer.get_executor(), [e] {
      e->signalled = true;
      e->timer.cancel();
    });
  }

  void on_message(const std::string& channel, const std::string& payload) {
    std::vector<std::shared_ptr<watch::entry>> due;
    {
      std::lock_guard lock(mutex);
      auto it = by_channel.find(channel);
      if (it == by_channel.end()) return;
      if (payload == "*") {
        due = it->second;
      } else {
        // Space-separated waiter ids; a channel has few local waiters, a message few ids.
        for (std::size_t pos = 0; pos < payload.size();) {
          auto end = payload.find(' ', pos);
          if (end == std::string::npos) end = payload.size();
          const std::string_view id(payload.data() + pos, end - pos);
          for (const auto& e : it->second)
            if (e->id == id) due.push_back(e);
          pos = end + 1;
        }
      }
    }
    for (const auto& e : due) signal(e);
  }

  void wake_all() {
    std::vector<std::shared_ptr<watch::entry>> due;
    {
      std::lock_guard lock(mutex);
      for (const auto& [channel, entries] : by_channel)
        due.insert(due.end(), entries.begin(), entries.end());
    }
    for (const auto& e : due) signal(e);
  }
};

redis_wakeups::redis_wakeups(executor ex, redis::connection_options options, std::string prefix)
    : prefix_(std::move(prefix)), shared_(std::make_shared<shared>()) {
  redis::subscriber_handlers handlers;
  handlers.on_message = [s = shared_](const redis::message& m) {
    s->on_message(m.channel, m.payload);
  };
  // Subscribed (again): whatever was published meanwhile is lost, so everyone re-checks.
  handlers.on_ready = [s = shared_](bool) { s->wake_all(); };
  sub_ = std::make_unique<redis::subscriber>(ex, std::move(options), std::move(handlers));
}

redis_wakeups::~redis_wakeups() = default;

awaitable<void> redis_wakeups::start() {
  std::vector<std::string> patterns;
  patterns.push_back(prefix_ + ":wake:*");
  try {
    co_await sub_->psubscribe(std::move(patterns));
  } catch (const redis::error& e) {
    // Not connected yet: the pattern stays in the set and is subscribed on connect (on_ready
    // then wakes every watch). Waiters meanwhile live on their re-checks.
    if (e.code() == redis::errc::closed) throw;
  }
}

awaitable<void> redis_wakeups::wait_ready(millis within) {
  return sub_->wait_ready(within);
}

bool redis_wakeups::ready() const {
  return sub_->ready();
}

awaitable<void> redis_wakeups::close() {
  return sub_->close();
}

std::string redis_wakeups::channel(std::string_view kind, std::string_view name) const {
  std::string out = prefix_;
  out += ":wake:";
  out += kind;
  out += ':';
  out += name;
  return out;
}

std::unique_ptr<redis_wakeups::watch> redis_wakeups::watch_channel(std::string channel,
                                                                   std::string id,
                                                                   executor strand) {
  auto e = std::make_shared<watch::entry>(std::move(channel), std::move(id), std::move(strand));
  {
    std::lock_guard lock(shared_->mutex);
    shared_->by_channel[e->channel].push_back(e);
  }
  return std::unique_ptr<watch>(new watch(shared_, std::move(e)));
}

void redis_wakeups::wake_all() {
  shared_->wake_all();
}

redis_wakeups::watch::watch(std::shared_ptr<shared> owner, std::shared_ptr<entry> e)
    : owner_(std::move(owner)), entry_(std::move(e)) {}

redis_wakeups::watch::~watch() {
  std::lock_guard lock(owner_->mutex);
  auto it = owner_->by_channel.find(entry_->channel);
  if (it == owner_->by_channel.end()) return;
  std::erase(it->second, entry_);
  if (it->second.empty()) owner_->by_channel.erase(it);
}

awaitable<void> redis_wakeups::watch::wait_until(steady_clock::time_point until) {
  if (!entry_->signalled) {
    entry_->timer.expires_at(until);
    co_await entry_->timer.async_wait(net::as_tuple(net::use_awaitable));
  }
  entry_->signalled = false;
}

}  // namespace gatherd::core
