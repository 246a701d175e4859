#include "service/telemetry/log.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>

#include "service/codec/json_text.hpp"

namespace gatherd::service::log {

namespace {

std::shared_ptr<spdlog::logger> logger;
bool json_format = true;
// The logger's level, read without going through the logger: every job transition asks.
std::atomic<int> threshold{spdlog::level::off};

void set_threshold(spdlog::level::level_enum l) {
  logger->set_level(l);
  threshold.store(l, std::memory_order_relaxed);
}

spdlog::level::level_enum to_spdlog(level l) {
  switch (l) {
    case level::debug:
      return spdlog::level::debug;
    case level::info:
      return spdlog::level::info;
    case level::warn:
      return spdlog::level::warn;
    case level::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

}  // namespace

void init(const config& c) {
  json_format = c.log_format == "json";
  spdlog::init_thread_pool(8192, 1);
  auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  logger = std::make_shared<spdlog::async_logger>("gatherd", sink, spdlog::thread_pool(),
                                                  spdlog::async_overflow_policy::overrun_oldest);
  logger->set_pattern(json_format ? R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})"
                                  : "%Y-%m-%dT%H:%M:%S.%eZ %-5l %v",
                      spdlog::pattern_time_type::utc);
  set_threshold(spdlog::level::from_str(c.log_level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

void shutdown() {
  if (logger) logger->flush();
  threshold.store(spdlog::level::off, std::memory_order_relaxed);
  spdlog::shutdown();
  logger.reset();
}

std::size_t dropped() {
  auto pool = spdlog::thread_pool();
  return pool ? pool->overrun_counter() : 0;
}

void announce(std::string_view msg, std::string_view key1, std::string_view value1,
              std::string_view key2, std::int64_t value2) {
  if (!logger || logger->level() == spdlog::level::off) return;
  const auto configured = logger->level();
  set_threshold(std::min(configured, spdlog::level::info));
  info(msg).add(key1, value1).add(key2, value2);
  set_threshold(configured);
}

event::event(level lvl, std::string_view msg)
    : enabled_(to_spdlog(lvl) >= threshold.load(std::memory_order_relaxed)), level_(lvl) {
  if (!enabled_) return;
  if (json_format) {
    line_.append(std::string_view("\"msg\":"));
    append_json_string(line_, msg);
  } else {
    line_.append(msg);
  }
}

event::~event() {
  if (!enabled_) return;
  logger->log(to_spdlog(level_), std::string_view(line_.data(), line_.size()));
}

void event::key(std::string_view k) {
  if (json_format) {
    line_.push_back(',');
    append_json_string(line_, k);
    line_.push_back(':');
  } else {
    line_.push_back(' ');
    line_.append(k);
    line_.push_back('=');
  }
}

event& event::add(std::string_view k, std::string_view value) {
  if (!enabled_) return *this;
  key(k);
  if (json_format) {
    append_json_string(line_, value);
  } else {
    line_.append(value);
  }
  return *this;
}

event& event::add(std::string_view k, std::int64_t value) {
  if (!enabled_) return *this;
  key(k);
  fmt::format_to(std::back_inserter(line_), "{}", value);
  return *this;
}

event& event::add(std::string_view k, double value) {
  if (!enabled_) return *this;
  key(k);
  fmt::format_to(std::back_inserter(line_), "{:.3f}", value);
  return *this;
}

event& event::add(std::string_view k, bool value) {
  if (!enabled_) return *this;
  key(k);
  line_.append(value ? std::string_view("true") : std::string_view("false"));
  return *this;
}

}  // namespace gatherd::service::log
