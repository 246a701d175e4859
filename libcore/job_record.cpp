#include "libcore/job_record.hpp"

#include "libcore/job_result.hpp"
#include "libcore/payload_bytes.hpp"

namespace gatherd::core {

namespace {

// (Labels are a header_list too: one overload counts both.)
std::size_t bytes_of(const fetch::header_list& headers) {
  std::size_t n = 0;
  for (const auto& [name, value] : headers) n += name.size() + value.size();
  return n;
}

std::size_t bytes_of(const fetch::http_request& r) {
  return r.method.size() + r.url.size() + bytes_of(r.headers) + r.body.size();
}

std::size_t bytes_of(const job_error& e) {
  return e.type.size() + e.message.size();
}

std::size_t bytes_of(const fetch::fetch_result& r) {
  return r.url.size() + bytes_of(r.headers) + r.body.size() + (r.error ? bytes_of(*r.error) : 0);
}

std::size_t bytes_of(const job_params& params) {
  struct visit {
    std::size_t operator()(const sleep_params& p) const {
      return (p.result ? payload_bytes(*p.result) : 0) + (p.fail ? p.fail->size() : 0);
    }
    std::size_t operator()(const compute_params& p) const { return p.data.size(); }
    std::size_t operator()(const fetch_params& p) const { return bytes_of(p.request); }
    std::size_t operator()(const fetch_batch_params& p) const {
      std::size_t n = 0;
      for (const auto& r : p.requests) n += bytes_of(r);
      return n;
    }
  };
  return std::visit(visit{}, params);
}

std::size_t bytes_of(const job_result& result) {
  struct visit {
    std::size_t operator()(const json& v) const { return payload_bytes(v); }
    std::size_t operator()(const fetch::fetch_result& r) const { return bytes_of(r); }
    std::size_t operator()(const fetch::batch_outcome& b) const {
      std::size_t n = 0;
      for (const auto& r : b.results) n += bytes_of(r);
      return n;
    }
  };
  return std::visit(visit{}, result.value);
}

// The key and fingerprint are kept only with a key (engine::create).
std::size_t key_bytes(const std::string& key, const std::string& fingerprint) {
  return key.empty() ? 0 : key.size() + fingerprint.size();
}

}  // namespace

std::size_t spec_bytes(const job_spec& spec) {
  return bytes_of(spec.params) + bytes_of(spec.labels) +
         key_bytes(spec.idempotency_key, spec.fingerprint);
}

std::size_t unfinished_bytes(const job_record& job) {
  // The labels moved from the spec into the record at creation.
  return (job.run ? bytes_of(job.run->spec.params) : 0) + bytes_of(job.labels) +
         key_bytes(job.idempotency_key, job.fingerprint);
}

std::size_t finished_bytes(const job_record& job) {
  return bytes_of(job.labels) + key_bytes(job.idempotency_key, job.fingerprint) +
         (job.result ? bytes_of(*job.result) : 0) + (job.error ? bytes_of(*job.error) : 0);
}

job_snapshot job_record::snapshot() const {
  job_snapshot s;
  s.id = id;
  s.seq = seq;
  s.kind = kind;
  s.state = state;
  s.cancel_requested = cancel_requested;
  s.attempts = attempts;
  s.labels = labels;
  s.created_at = created_at;
  if (started()) s.started_at = started_at;
  if (is_terminal(state)) s.finished_at = finished_at;
  s.result = result;
  if (error) s.error = *error;
  return s;
}

}  // namespace gatherd::core
