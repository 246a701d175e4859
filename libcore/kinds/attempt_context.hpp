// What one attempt of a job kind may use.
#pragma once

namespace gatherd::core {

class worker_pool;

struct attempt_context {
  int attempt = 1;  // 1-based
  worker_pool& pool;
};

}  // namespace gatherd::core
