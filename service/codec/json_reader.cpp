#include "service/codec/json_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "service/http/problem.hpp"

namespace gatherd::service {

namespace {

constexpr std::size_t max_depth = 64;

// Boost.JSON's SAX parser building nlohmann's tree directly: about twice as fast as nlohmann's
// own parser on a 10,000-spec gather (its lexer reads a character at a time). Two things the
// tree parser of Boost 1.81 gets wrong are done here: doubles are read from their text with
// from_chars (Boost 1.81 may be an ulp off: 238.20188140736326 came back changed, found by
// fuzz_json_text), and a key given twice in one object is refused rather than one copy
// silently dropped. Non-negative integers become unsigned, as nlohmann's parser makes them.
class tree_builder {
 public:
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  json result;
  std::string refusal;  // why the handler stopped the parse, for the problem's detail

  bool on_document_begin(boost::json::error_code&) { return true; }
  bool on_document_end(boost::json::error_code&) { return true; }
  bool on_array_begin(boost::json::error_code& ec) { return open(json::array(), ec); }
  bool on_array_end(std::size_t, boost::json::error_code&) { return close(); }
  bool on_object_begin(boost::json::error_code& ec) { return open(json::object(), ec); }
  bool on_object_end(std::size_t, boost::json::error_code&) { return close(); }
  bool on_string_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_string(boost::json::string_view s, std::size_t, boost::json::error_code& ec) {
    text_.append(s.data(), s.size());
    const bool ok = add(json(std::move(text_)), ec) != nullptr;
    text_.clear();
    return ok;
  }
  bool on_key_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_number_part(boost::json::string_view s, boost::json::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, boost::json::string_view, boost::json::error_code& ec) {
    text_.clear();
    return i >= 0 ? add(static_cast<std::uint64_t>(i), ec) : add(i, ec);
  }
  bool on_uint64(std::uint64_t u, boost::json::string_view, boost::json::error_code& ec) {
    text_.clear();
    return add(u, ec);
  }
  bool on_double(double, boost::json::string_view s, boost::json::error_code& ec) {
    text_.append(s.data(), s.size());
    double d = 0;
    const char* end = text_.data() + text_.size();
    if (auto [ptr, err] = std::from_chars(text_.data(), end, d); err != std::errc{} || ptr != end) {
      d = std::strtod(text_.c_str(), nullptr);  // underflow: 0 or a subnormal, as strtod says
    }
    text_.clear();
    if (!std::isfinite(d)) return refuse("a number is out of range", ec);  // 1e400
    return add(d, ec);
  }
  bool on_bool(bool b, boost::json::error_code& ec) { return add(b, ec); }
  bool on_null(boost::json::error_code& ec) { return add(nullptr, ec); }
  bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
  bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }

 private:
  std::vector<json*> open_;  // the arrays and objects being filled, innermost last
  std::string key_;          // the key of the next value of an object
  std::string text_;         // a string or a number read in parts

  bool refuse(std::string why, boost::json::error_code& ec) {
    refusal = std::move(why);
    ec = boost::json::error::syntax;
    return false;
  }

  // Places a value in the innermost container (or as the document) and returns where it went.
  // Pointers to the open containers stay valid: an array grows only after its last child
  // closed, and a map's nodes never move.
  template <class V>
  json* add(V&& value, boost::json::error_code& ec) {
    if (open_.empty()) {
      result = std::forward<V>(value);
      return &result;
    }
    json& parent = *open_.back();
    if (parent.is_array()) {
      auto& items = parent.get_ref<json::array_t&>();
      items.emplace_back(std::forward<V>(value));
      return &items.back();
    }
    auto [at, added] = parent.get_ref<json::object_t&>().try_emplace(key_, std::forward<V>(value));
    if (!added) {
      refuse("the key '" + key_.substr(0, 64) + "' appears twice in one object", ec);
      return nullptr;
    }
    key_.clear();
    return &at->second;
  }
  bool open(json container, boost::json::error_code& ec) {
    json* placed = add(std::move(container), ec);
    if (placed) open_.push_back(placed);
    return placed != nullptr;
  }
  bool close() {
    open_.pop_back();
    return true;
  }
};

}  // namespace

json parse_json_body(std::string_view body) {
  boost::json::parse_options options;
  options.max_depth = max_depth;
  boost::json::basic_parser<tree_builder> parser(options);
  boost::system::error_code ec;
  const std::size_t read = parser.write_some(false, body.data(), body.size(), ec);
  if (ec == boost::json::error::too_deep) {
    throw invalid_request("the body nests deeper than " + std::to_string(max_depth) + " levels");
  }
  if (!parser.handler().refusal.empty()) {
    throw invalid_request("the body is not valid JSON: " + parser.handler().refusal);
  }
  if (ec || read != body.size()) throw invalid_request("the body is not valid JSON");
  return std::move(parser.handler().result);
}

void require_json_body(const http_request& req) {
  std::string_view type = req.content_type;
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  if (!boost::algorithm::iequals(type, "application/json")) {
    throw request_error(415, "unsupported_media_type",
                        "the body must be application/json (got '" + req.content_type + "')");
  }
}

object_reader::object_reader(const json& value, std::string path,
                             std::initializer_list<std::string_view> allowed)
    : object_(value), path_(std::move(path)) {
  if (!value.is_object()) {
    throw invalid_request((path_.empty() ? std::string("the body") : "field '" + path_ + "'") +
                          " must be a JSON object");
  }
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      throw invalid_request("unknown field '" + field(it.key()) + "'");
    }
  }
}

std::string object_reader::field(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const json* object_reader::take(std::string_view key) const {
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

const json* object_reader::raw(std::string_view key) {
  return take(key);
}

std::optional<std::int64_t> object_reader::integer(std::string_view key, std::int64_t min,
                                                   std::int64_t max) {
  const json* v = take(key);
  if (!v) return std::nullopt;
  auto range = [&] {
    return invalid_request("field '" + field(key) + "' must be an integer from " +
                           std::to_string(min) + " to " + std::to_string(max));
  };
  std::int64_t n;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(max))
      throw range();
    n = v->get<std::int64_t>();
  } else if (v->is_number_float() && std::trunc(v->get<double>()) == v->get<double>() &&
             std::abs(v->get<double>()) < 9e15) {
    n = static_cast<std::int64_t>(v->get<double>());  // 100.0 is an integer
  } else {
    throw range();
  }
  if (n < min || n > max) throw range();
  return n;
}

std::optional<double> object_reader::number(std::string_view key, double min, double max) {
  const json* v = take(key);
  if (!v) return std::nullopt;
  if (!v->is_number() || v->get<double>() < min || v->get<double>() > max) {
    throw invalid_request(
        fmt::format("field '{}' must be a number from {} to {}", field(key), min, max));
  }
  return v->get<double>();
}

std::optional<bool> object_reader::boolean(std::string_view key) {
  const json* v = take(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw invalid_request("field '" + field(key) + "' must be true or false");
  return v->get<bool>();
}

std::optional<std::string> object_reader::string(std::string_view key, std::size_t max_length) {
  const json* v = take(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw invalid_request("field '" + field(key) + "' must be a string");
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > max_length) {
    throw invalid_request("field '" + field(key) + "' must be at most " +
                          std::to_string(max_length) + " characters");
  }
  return s;
}

std::optional<core::millis> object_reader::duration(std::string_view key, std::int64_t max_ms) {
  auto n = integer(key, 0, max_ms);
  if (!n) return std::nullopt;
  return core::millis{*n};
}

std::optional<object_reader> object_reader::object(
    std::string_view key, std::initializer_list<std::string_view> allowed) {
  const json* v = take(key);
  if (!v) return std::nullopt;
  return object_reader(*v, field(key), allowed);
}

}  // namespace gatherd::service
