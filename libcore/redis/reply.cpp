#include "libcore/redis/reply.hpp"

#include "libcore/redis/error.hpp"

namespace gatherd::core::redis {

reply reply::make_integer(long long value) {
  reply r;
  r.kind_ = kind::integer;
  r.integer_ = value;
  return r;
}

reply reply::make_status(std::string text) {
  reply r;
  r.kind_ = kind::status;
  r.text_ = std::move(text);
  return r;
}

reply reply::make_error(std::string text) {
  reply r;
  r.kind_ = kind::error;
  r.text_ = std::move(text);
  return r;
}

reply reply::make_string(std::string bytes) {
  reply r;
  r.kind_ = kind::string;
  r.text_ = std::move(bytes);
  return r;
}

reply reply::make_array(std::vector<reply> elements) {
  reply r;
  r.kind_ = kind::array;
  r.elements_ = std::move(elements);
  return r;
}

namespace {
[[noreturn]] void wrong_type(const reply& r, std::string_view expected) {
  if (r.is_error()) throw error(errc::server_error, r.error_message());
  throw error(errc::unexpected_reply,
              "expected " + std::string(expected) + " from Redis, got " + r.describe());
}
}  // namespace

long long reply::as_integer() const {
  if (kind_ != kind::integer) wrong_type(*this, "an integer");
  return integer_;
}

const std::string& reply::as_string() const {
  if (kind_ != kind::string && kind_ != kind::status) wrong_type(*this, "a string");
  return text_;
}

const std::vector<reply>& reply::as_array() const {
  if (kind_ != kind::array) wrong_type(*this, "an array");
  return elements_;
}

const std::string& reply::error_message() const {
  static const std::string none;
  return kind_ == kind::error ? text_ : none;
}

std::string reply::describe() const {
  // Bounded: a reply can be megabytes, a log line should not be.
  constexpr std::size_t max_text = 64;
  auto clip = [](const std::string& s) {
    return s.size() <= max_text
               ? s
               : s.substr(0, max_text) + "...(" + std::to_string(s.size()) + " bytes)";
  };
  switch (kind_) {
    case kind::nil:
      return "(nil)";
    case kind::integer:
      return "(integer) " + std::to_string(integer_);
    case kind::status:
      return clip(text_);
    case kind::error:
      return "(error) " + clip(text_);
    case kind::string:
      return "\"" + clip(text_) + "\"";
    case kind::array:
      return "(array of " + std::to_string(elements_.size()) + ")";
  }
  return "?";
}

std::string_view to_string(reply::kind k) {
  switch (k) {
    case reply::kind::nil:
      return "nil";
    case reply::kind::integer:
      return "integer";
    case reply::kind::status:
      return "status";
    case reply::kind::error:
      return "error";
    case reply::kind::string:
      return "string";
    case reply::kind::array:
      return "array";
  }
  return "unknown";
}

}  // namespace gatherd::core::redis
