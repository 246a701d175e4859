// The fetch codec (service/codec/fetch_codec) through the JSON reader: a POST /v1/fetch body, or
// (first byte 'p') a `fetch` job's params. Every accepted request is then encoded as a result
// whose response echoes it: its headers as response headers, its body as response body.
//
// Asserted: refusals are 4xx problems; what is accepted is what the outbound client can send
// without refusing it (a URL the one URL parser takes, an origin-form target, a method token,
// header names that are tokens and values without CR, LF or NUL, no framing headers); results,
// NDJSON lines and whole batches parse as JSON and keep the body.
#include <cstddef>
#include <cstdint>

#include "libcore/fetch/http_syntax.hpp"
#include "libcore/fetch/url.hpp"
#include "service/codec/fetch_codec.hpp"
#include "service/codec/json_reader.hpp"
#include "service/http/problem.hpp"
#include "tests/fuzz/support/check.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;
using nlohmann::json;
namespace fetch = gatherd::core::fetch;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void check_sendable(const fetch::http_request& r) {
  const auto url = fetch::try_parse_fetch_url(r.url);
  require(url.has_value(), "an accepted URL the URL parser refuses", r.url);
  require(fetch::is_origin_form(url->path), "an accepted URL without an origin-form target", r.url);
  require(fetch::is_token(r.method), "an accepted method that is not a token", r.method);
  for (const auto& [name, value] : r.headers) {
    require(fetch::is_token(name) && fetch::is_field_value(value), "an accepted header",
            name + ": " + value);
    const std::string key = lower(name);
    require(key != "content-length" && key != "transfer-encoding" && key != "connection",
            "an accepted framing header", name);
  }
}

fetch::fetch_result echo(const fetch::http_request& r, std::size_t i) {
  fetch::fetch_result result;
  result.url = r.url;
  result.status = 200;
  result.headers = r.headers;
  result.body = r.body;
  result.attempts = static_cast<int>(i % 3) + 1;
  if (i % 2) result.error = core::job_error{"http_status", r.body};
  return result;
}

void check_encoded(const std::vector<fetch::http_request>& requests) {
  fetch::batch_outcome outcome;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    outcome.results.push_back(echo(requests[i], i));
    const std::string line = service::encode_fetch_line(outcome.results.back(), i);
    const auto parsed = client_parse(line);
    require(parsed && (*parsed)["index"] == i, "an NDJSON fetch line does not parse", line);
    require((*parsed)["body"] == requests[i].body, "a response body changed on the way out", line);
  }
  const std::string text = service::encode_fetch_batch(outcome);
  const auto batch = client_parse(text);
  require(batch && (*batch)["results"].size() == requests.size(), "a fetch batch does not parse",
          text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return -1;
  const bool params = data[0] == 'p';
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const service::fetch_limits limits;
  try {
    const json body = service::parse_json_body(rest);
    std::vector<fetch::http_request> requests;
    if (params) {
      requests.push_back(service::parse_fetch_params(body, "params", limits, std::nullopt));
    } else {
      auto parsed = service::parse_fetch_batch(body, limits);
      require(
          !parsed.batch.requests.empty() && parsed.batch.requests.size() <= limits.max_requests &&
              parsed.batch.concurrency >= 1 && parsed.batch.concurrency <= limits.max_concurrency,
          "a batch out of its limits");
      requests = std::move(parsed.batch.requests);
    }
    for (const auto& r : requests) {
      check_sendable(r);
      require(r.max_body_bytes <= limits.max_body_bytes && r.max_redirects <= limits.max_redirects,
              "a request past the server's limits");
    }
    check_encoded(requests);
  } catch (...) {
    check_response(service::problem_from(std::current_exception()), "a refused fetch body");
  }
  return 0;
}
