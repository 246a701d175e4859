// Structured logs: one JSON object per line on stdout (or `key=value` text for terminals),
// written by spdlog's async logger so an I/O thread never waits for the terminal or a pipe:
// when the queue is full the oldest lines are dropped and counted.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string_view>

#include "service/config.hpp"

namespace gatherd::service::log {

enum class level { debug, info, warn, error };

void init(const config& c);
void shutdown();  // flushes; call after the I/O threads are joined
std::size_t dropped();

// One log line, built field by field: log::event(level::info, "http.request").add("status", 200).
class event {
 public:
  event(level lvl, std::string_view msg);
  ~event();  // writes the line
  event(event&& other) noexcept
      : enabled_(other.enabled_), level_(other.level_), line_(std::move(other.line_)) {
    other.enabled_ = false;
  }
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  event& add(std::string_view key, std::string_view value);
  event& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  event& add(std::string_view key, std::int64_t value);
  event& add(std::string_view key, int value) { return add(key, std::int64_t{value}); }
  event& add(std::string_view key, unsigned value) { return add(key, std::int64_t{value}); }
  event& add(std::string_view key, std::size_t value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  event& add(std::string_view key, double value);
  event& add(std::string_view key, bool value);
  // False when the level is filtered out: callers may skip computing field values.
  bool enabled() const { return enabled_; }

 private:
  void key(std::string_view k);
  bool enabled_;
  level level_;
  fmt::memory_buffer line_;
};

inline event info(std::string_view msg) {
  return event(level::info, msg);
}
// An info line written at any --log-level but off (the "listening" line tools wait for).
// Start-up only: it briefly lowers the logger's level, which is not thread-safe.
void announce(std::string_view msg, std::string_view key1, std::string_view value1,
              std::string_view key2, std::int64_t value2);
inline event warn(std::string_view msg) {
  return event(level::warn, msg);
}
inline event error(std::string_view msg) {
  return event(level::error, msg);
}
inline event debug(std::string_view msg) {
  return event(level::debug, msg);
}

}  // namespace gatherd::service::log
