#include "libcore/job_record.hpp"

namespace gatherd::core {

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
