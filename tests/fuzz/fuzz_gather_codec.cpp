// The gather codec (service/codec/gather_codec) through the JSON reader: a POST /v1/gather body
// read the way read_gather reads it (its entries: job ids or inline specs; its options), then a
// summary written for it, with an error message taken from the input.
//
// Asserted: refusals are 4xx problems; a malformed job id is a 404, as an unknown one; the
// summary fields (also the NDJSON summary line and the WebSocket gather_done message) parse as
// JSON and keep the error text and indices.
#include <cstddef>
#include <cstdint>

#include "libcore/gather.hpp"
#include "service/codec/gather_codec.hpp"
#include "service/codec/json_reader.hpp"
#include "service/http/problem.hpp"
#include "tests/fuzz/support/check.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;
using nlohmann::json;

namespace {

constexpr std::size_t max_gather = 10000;  // --max-gather's default

// The summary of a gather over `entries`: every other one done, a failure named `message`.
void check_summary(std::size_t entries, core::gather_options options, std::string message) {
  core::gather_result result;
  result.outcome = options.when == core::return_when::first_exception
                       ? core::gather_outcome::failed
                       : core::gather_outcome::completed;
  result.elapsed = options.timeout.value_or(core::millis{0});
  for (std::size_t i = 0; i < entries; ++i) (i % 2 ? result.pending : result.done).push_back(i);
  result.first_error = core::gather_error{0, core::job_id{}, {"failed", std::move(message)}};
  fmt::memory_buffer out;
  out.push_back('{');
  service::write_gather_summary_fields(out, result);
  out.push_back('}');
  const std::string text = fmt::to_string(out);
  const auto summary = client_parse(text);
  require(summary && summary->is_object(), "gather summary does not parse", text);
  require((*summary)["done"].size() == result.done.size() &&
              (*summary)["pending"].size() == result.pending.size(),
          "gather summary indices lost", text);
  // The message as a client reads it: invalid UTF-8 replaced, nothing else changed.
  const auto expected = client_parse(
      json(result.first_error->error.message).dump(-1, ' ', false, json::error_handler_t::replace));
  require(expected && *expected == (*summary)["first_error"]["error"]["message"],
          "gather error message changed", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const service::spec_limits limits;
  try {
    const json body = service::parse_json_body(input);
    service::object_reader r(body, "",
                             {"jobs", "return_when", "return_exceptions", "cancel_on_error",
                              "cancel_pending", "timeout_ms"});
    const json* jobs = r.raw("jobs");
    if (!jobs || !jobs->is_array() || jobs->empty() || jobs->size() > max_gather) {
      throw service::invalid_request("field 'jobs' must be an array of 1 to 10000 entries");
    }
    for (std::size_t i = 0; i < jobs->size(); ++i) {
      const json& entry = (*jobs)[i];
      try {
        service::parse_gather_entry(entry, i, limits);
      } catch (const service::request_error& e) {
        if (entry.is_string()) require(e.status() == 404, "a bad job id that is not a 404");
        throw;
      }
    }
    const auto options = service::parse_gather_options(r);
    // An error message as arbitrary as a failed job's (any bytes, invalid UTF-8 included).
    check_summary(jobs->size(), options, std::string(input.substr(0, 200)));
  } catch (...) {
    check_response(service::problem_from(std::current_exception()), "a refused gather body");
  }
  return 0;
}
