// Shared harness for libcore engine tests: an io_context run on 1 or 2 threads, an engine on it,
// a recording observer, and `run(body)` which co_spawns a test coroutine, always finishes with
// `engine.shutdown(0)` so no job coroutine outlives the io_context, and then requires the
// io_context to run out of work on its own (a leaked coroutine or timer fails the test).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "libcore/engine.hpp"
#include "support/coro_test.hpp"

namespace gatherd::core {

// Readable gtest output for the engine's vocabulary (found by ADL).
inline void PrintTo(job_state s, std::ostream* os) {
  *os << to_string(s);
}
inline void PrintTo(job_kind k, std::ostream* os) {
  *os << to_string(k);
}
inline void PrintTo(const job_id& id, std::ostream* os) {
  *os << id.to_string();
}
inline void PrintTo(engine_errc c, std::ostream* os) {
  static constexpr const char* names[] = {"queue_full",    "not_found",
                                          "already_finished", "idempotency_conflict",
                                          "shutting_down", "job_too_large",
                                          "jobs_memory_full"};
  *os << names[static_cast<int>(c)];
}
inline void PrintTo(const job_error& e, std::ostream* os) {
  *os << "{type: " << e.type << ", message: " << e.message << "}";
}
inline void PrintTo(gather_outcome o, std::ostream* os) {
  *os << to_string(o);
}

namespace test {

using namespace std::chrono_literals;

// A fatal check usable inside a coroutine (ASSERT_* cannot `return` from one).
inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("requirement failed: " + what);
}

// ---- specs ----------------------------------------------------------------------------------

inline job_spec sleep_spec(millis duration) {
  job_spec s;
  sleep_params p;
  p.duration = duration;
  s.params = p;
  return s;
}
// A job's result as JSON (null when it has none).
inline json result_of(const job_snapshot& job) {
  return job.result ? std::get<json>(job.result->value) : json();
}

inline sleep_params& sleep_of(job_spec& s) {
  return std::get<sleep_params>(s.params);
}

inline job_spec primes_spec(std::uint64_t n) {
  job_spec s;
  compute_params p;
  p.op = compute_params::operation::primes;
  p.n = n;
  s.params = p;
  return s;
}

inline job_spec sha256_spec(std::string data, std::uint64_t rounds) {
  job_spec s;
  compute_params p;
  p.op = compute_params::operation::sha256;
  p.data = std::move(data);
  p.rounds = rounds;
  s.params = p;
  return s;
}

inline retry_policy fixed_retry(int max_attempts, millis initial, double multiplier = 2.0) {
  return retry_policy{max_attempts, initial, multiplier, millis{10000}, false};
}

// Queries built outside coroutine bodies (g++ 12 mishandles braced temporaries next to co_await).
inline job_query query(std::optional<job_state> state = {}, std::optional<job_kind> kind = {},
                       job_labels labels = {}, std::size_t limit = 100,
                       std::optional<std::uint64_t> before = {}) {
  job_query q;
  q.state = state;
  q.kind = kind;
  q.labels = std::move(labels);
  q.limit = limit;
  q.before_seq = before;
  return q;
}

// The engine_errc an awaitable fails with, or nullopt if it succeeds.
template <class T>
awaitable<std::optional<engine_errc>> error_of(awaitable<T> op) {
  return error_code_of<engine_error>(std::move(op));
}

// ---- observer -------------------------------------------------------------------------------

class recording_observer : public engine_observer {
 public:
  void job_submitted(const job_record& job) override {
    std::lock_guard lock(m_);
    submitted_.push_back(job.id);
  }
  void job_rejected(std::string_view reason, std::size_t count) override {
    std::lock_guard lock(m_);
    rejected_[std::string(reason)] += count;
  }
  void job_started(const job_record& job, std::chrono::duration<double>) override {
    std::lock_guard lock(m_);
    started_.push_back(job.id);
    ++running_;
    max_running_ = std::max(max_running_, running_);
  }
  void job_retrying(const job_record&, const job_error&, millis backoff) override {
    std::lock_guard lock(m_);
    backoffs_.push_back(backoff);
  }
  void job_finished(const job_record& job) override {
    std::lock_guard lock(m_);
    finished_.push_back(job.id);
    finished_state_[job.id.to_string()] = job.state;
    if (job.started()) --running_;
  }

  std::vector<job_id> started() const {
    std::lock_guard l(m_);
    return started_;
  }
  std::vector<job_id> finished() const {
    std::lock_guard l(m_);
    return finished_;
  }
  std::vector<millis> backoffs() const {
    std::lock_guard l(m_);
    return backoffs_;
  }
  int max_running() const {
    std::lock_guard l(m_);
    return max_running_;
  }
  int running() const {
    std::lock_guard l(m_);
    return running_;
  }
  std::size_t rejected(const std::string& reason) const {
    std::lock_guard l(m_);
    auto it = rejected_.find(reason);
    return it == rejected_.end() ? 0 : it->second;
  }
  bool was_started(const job_id& id) const {
    std::lock_guard l(m_);
    return std::find(started_.begin(), started_.end(), id) != started_.end();
  }
  std::optional<job_state> finished_state(const job_id& id) const {
    std::lock_guard l(m_);
    auto it = finished_state_.find(id.to_string());
    if (it == finished_state_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex m_;
  std::vector<job_id> submitted_, started_, finished_;
  std::map<std::string, std::size_t> rejected_;
  std::map<std::string, job_state> finished_state_;
  std::vector<millis> backoffs_;
  int running_ = 0;
  int max_running_ = 0;
};

// ---- fixture --------------------------------------------------------------------------------

class engine_test : public ::testing::Test {
 protected:
  // Tests adjust these before the first call to engine() or run().
  engine_config config{.max_running = 4,
                       .max_queued = 100,
                       .max_retained = 1000,
                       .default_retention = millis{600000},
                       .compute_threads = 2,
                       .sweep_interval = millis{1000}};
  int io_threads = 2;

  engine& eng() {
    if (!engine_) engine_ = std::make_unique<engine>(io_.get_executor(), config, &observer);
    return *engine_;
  }

  bool is_io_thread(std::thread::id id) const {
    std::lock_guard l(ids_m_);
    return io_thread_ids_.contains(id);
  }

  // Runs `body` (a callable returning awaitable<void>) on the io_context, then shuts the engine
  // down with no grace. Fails the test if the body throws, or if anything is left running.
  template <class Body>
  void run(Body body, std::chrono::seconds limit = std::chrono::seconds(30)) {
    engine& e = eng();
    auto wrapper = [&]() -> awaitable<void> {
      std::exception_ptr error;
      try {
        co_await body();
      } catch (...) {
        error = std::current_exception();
      }
      co_await e.shutdown(millis{0});
      if (error) std::rethrow_exception(error);
    };
    std::future<void> done = net::co_spawn(io_, wrapper(), net::use_future);

    std::atomic<int> exited{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < io_threads; ++i) {
      threads.emplace_back([this, &exited] {
        {
          std::lock_guard l(ids_m_);
          io_thread_ids_.insert(std::this_thread::get_id());
        }
        io_.run();
        ++exited;
      });
    }
    const bool finished = done.wait_for(limit) == std::future_status::ready;
    // After the body and shutdown, the io_context must run out of work by itself.
    const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (finished && exited.load() < io_threads &&
           std::chrono::steady_clock::now() < drain_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const bool drained = exited.load() == io_threads;
    if (!finished || !drained) io_.stop();
    for (auto& t : threads) t.join();
    io_.restart();

    if (!finished) {
      ADD_FAILURE() << "test body did not finish within " << limit.count() << " s";
      return;
    }
    EXPECT_TRUE(drained) << "io_context still had work 5 s after engine.shutdown returned";
    try {
      done.get();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "test body threw: " << e.what();
    }
  }

  recording_observer observer;

 private:
  net::io_context io_;  // declared before the engine: destroyed after it
  std::unique_ptr<engine> engine_;
  mutable std::mutex ids_m_;
  std::set<std::thread::id> io_thread_ids_;
};

}  // namespace test
}  // namespace gatherd::core
