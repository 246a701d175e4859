// What one attempt of a job kind may use.
#pragma once

namespace gatherd::core {

class worker_pool;
namespace fetch {
class fetcher;
}

struct attempt_context {
  int attempt = 1;  // 1-based
  int max_attempts = 1;
  worker_pool& pool;
  fetch::fetcher* fetcher = nullptr;  // null: this engine has no outbound HTTP
};

}  // namespace gatherd::core
