#include "libcore/redis/protocol.hpp"

#include <hiredis/hiredis.h>

#include <new>
#include <vector>

#include "libcore/redis/error.hpp"

namespace gatherd::core::redis {

std::string format_command(std::span<const std::string> args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  char* raw = nullptr;
  const int size =
      redisFormatCommandArgv(&raw, static_cast<int>(args.size()), argv.data(), lengths.data());
  if (size < 0 || raw == nullptr) throw std::bad_alloc();  // its only failure is allocation
  std::string out(raw, static_cast<std::size_t>(size));
  redisFreeCommand(raw);
  return out;
}

namespace {

// hiredis's default reply objects, copied into our value type (recursion depth is bounded by
// hiredis itself: it refuses nesting deeper than 7 as a protocol error).
reply convert(const redisReply& r) {
  switch (r.type) {
    case REDIS_REPLY_INTEGER:
      return reply::make_integer(r.integer);
    case REDIS_REPLY_STATUS:
      return reply::make_status(std::string(r.str, r.len));
    case REDIS_REPLY_ERROR:
      return reply::make_error(std::string(r.str, r.len));
    case REDIS_REPLY_STRING:
      return reply::make_string(std::string(r.str, r.len));
    case REDIS_REPLY_ARRAY: {
      std::vector<reply> elements;
      elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i) elements.push_back(convert(*r.element[i]));
      return reply::make_array(std::move(elements));
    }
    case REDIS_REPLY_NIL:
      return reply{};
  }
  throw error(errc::protocol, "unknown reply type " + std::to_string(r.type) + " from hiredis");
}

struct reply_object_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};

}  // namespace

void reply_parser::free_reader::operator()(redisReader* r) const {
  redisReaderFree(r);
}

reply_parser::reply_parser() : reader_(redisReaderCreate()) {
  if (!reader_) throw std::bad_alloc();
}

reply_parser::~reply_parser() = default;

void reply_parser::feed(const char* data, std::size_t size) {
  if (redisReaderFeed(reader_.get(), data, size) != REDIS_OK) {
    throw error(errc::protocol, std::string("RESP: ") + reader_->errstr);
  }
}

std::optional<reply> reply_parser::next() {
  void* raw = nullptr;
  if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
    throw error(errc::protocol, std::string("RESP: ") + reader_->errstr);
  }
  if (raw == nullptr) return std::nullopt;  // the bytes so far end inside a reply
  std::unique_ptr<redisReply, reply_object_deleter> owned(static_cast<redisReply*>(raw));
  return convert(*owned);
}

}  // namespace gatherd::core::redis
