// The job codec (service/codec/job_codec) through the JSON reader: a job spec (POST /v1/jobs),
// a batch (POST /v1/jobs/batch) or a list query (GET /v1/jobs), chosen by the first byte:
//   'b'  the rest is a batch body     'q'  the rest is a query string (k=v&k=v, not decoded)
//   anything else: the rest is a job spec
//
// Asserted: every refusal is a 4xx problem (anything else thrown would be a 500 in the
// pipeline); an accepted spec's labels and sleep result come back unchanged through the job
// encoder, as a client parses it; a spec always gets the same idempotency fingerprint.
#include <cstddef>
#include <cstdint>

#include "libcore/job_result.hpp"
#include "service/codec/job_codec.hpp"
#include "service/codec/json_reader.hpp"
#include "service/http/problem.hpp"
#include "tests/fuzz/support/check.hpp"

using namespace gatherd;
using namespace gatherd::fuzz;
using nlohmann::json;

namespace {

constexpr std::size_t max_batch = 1000;  // --max-batch's default

// The job a spec becomes once it has run, as GET /v1/jobs/{id} writes it.
void round_trip(const core::job_spec& spec) {
  core::job_snapshot job;
  job.kind = spec.kind();
  job.state = core::job_state::succeeded;
  job.labels = spec.labels;
  job.created_at = core::wall_clock::now();
  job.started_at = job.finished_at = job.created_at;
  const auto* sleep = std::get_if<core::sleep_params>(&spec.params);
  if (sleep && sleep->result) {
    job.result = std::make_shared<const core::job_result>(core::job_result{*sleep->result});
  }
  if (sleep && sleep->fail) job.error = core::job_error{"failed", *sleep->fail};
  const std::string text = service::encode_job(job);
  const auto out = client_parse(text);
  require(out && out->is_object(), "an encoded job does not parse", text);
  json labels = json::object();
  for (const auto& [key, value] : spec.labels) labels[key] = value;
  require((*out)["labels"] == labels, "labels changed on the way out", text);
  if (sleep && sleep->result) {
    require((*out)["result"] == *sleep->result, "a sleep result changed on the way out", text);
  }
  if (sleep && sleep->fail) {
    require((*out)["error"]["message"] == *sleep->fail, "an error message changed", text);
  }
}

std::vector<std::pair<std::string, std::string>> query_of(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> query;
  while (!text.empty()) {
    const auto pair = text.substr(0, text.find('&'));
    text.remove_prefix(std::min(text.size(), pair.size() + 1));
    const auto eq = pair.find('=');
    query.emplace_back(pair.substr(0, eq), eq == std::string_view::npos ? "" : pair.substr(eq + 1));
  }
  return query;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return -1;
  const char mode = static_cast<char>(data[0]);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const service::spec_limits limits;
  try {
    if (mode == 'q') {
      const auto query = service::parse_job_query(query_of(rest));
      require(query.limit >= 1 && query.limit <= 1000, "a page limit out of 1..1000");
    } else if (mode == 'b') {
      const auto specs =
          service::parse_job_batch(service::parse_json_body(rest), limits, max_batch);
      require(!specs.empty() && specs.size() <= max_batch, "a batch size out of 1..max_batch");
      for (const auto& spec : specs) round_trip(spec);
    } else {
      const json body = service::parse_json_body(rest);
      const auto spec = service::parse_job_spec(body, limits);
      require(spec.kind() != core::job_kind::fetch_batch, "a fetch_batch spec accepted");
      require(service::parse_job_spec(body, limits).fingerprint == spec.fingerprint,
              "the same spec got two fingerprints");
      round_trip(spec);
    }
  } catch (...) {
    check_response(service::problem_from(std::current_exception()), "a refused job request");
  }
  return 0;
}
