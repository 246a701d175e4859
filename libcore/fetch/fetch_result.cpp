#include "libcore/fetch/fetch_result.hpp"

#include <cctype>

namespace gatherd::core::fetch {

namespace {

json headers_json(const header_list& headers) {
  json out = json::object();
  for (const auto& [name, value] : headers) {
    std::string key(name);
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto it = out.find(key);
    if (it == out.end()) {
      out.emplace(std::move(key), value);
    } else {
      it->get_ref<std::string&>() += ", " + value;
    }
  }
  return out;
}

}  // namespace

json to_json(const fetch_result& r, std::optional<std::size_t> index) {
  json out = json::object();
  if (index) out["index"] = *index;
  out["url"] = r.url;
  out["status"] = r.status ? json(r.status) : json(nullptr);
  out["headers"] = r.status ? headers_json(r.headers) : json(nullptr);
  out["body"] = r.status ? json(r.body) : json(nullptr);
  out["body_bytes"] = r.body.size();
  out["truncated"] = r.truncated;
  out["attempts"] = r.attempts;
  out["elapsed_ms"] = r.elapsed.count();
  out["error"] = r.error ? json{{"type", r.error->type}, {"message", r.error->message}}
                         : json(nullptr);
  return out;
}

json to_json(const batch_summary& s) {
  return json{{"ok", s.ok},
              {"failed", s.failed},
              {"elapsed_ms", s.elapsed.count()},
              {"throttled_ms", s.throttled.count()}};
}

}  // namespace gatherd::core::fetch
