// Whole-job timeouts (timeout_ms), attempt timeouts, retries and backoff.
#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace gatherd::core {
namespace {

using namespace test;

// ---- timeout_ms -----------------------------------------------------------------------------

TEST_F(engine_test, TimeoutEndsALongJobAsTimedOut) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(1000ms);
    spec.timeout = 50ms;
    const auto t0 = steady_clock::now();
    auto id = (co_await eng().submit(spec)).job.id;
    auto done = co_await eng().get(id, 5000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(done.state, job_state::timed_out);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "timeout");
    EXPECT_FALSE(done.cancel_requested);  // not a client cancel
    EXPECT_EQ(done.attempts, 1);
    EXPECT_GE(elapsed, 45.0);
    EXPECT_LE(elapsed, 400.0);
    EXPECT_EQ(eng().running(), 0u);
  });
}

TEST_F(engine_test, JobWithinItsTimeoutSucceeds) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(20ms);
    spec.timeout = 1000ms;
    auto id = (co_await eng().submit(spec)).job.id;
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::succeeded);
    EXPECT_EQ(result_of(done), (json{{"slept_ms", 20}}));
    EXPECT_FALSE(done.error.has_value());
  });
}

TEST_F(engine_test, TimeoutCountsTimeSpentQueued) {
  config.max_running = 1;
  run([&]() -> awaitable<void> {
    const auto t0 = steady_clock::now();
    auto blocker = (co_await eng().submit(sleep_spec(300ms))).job.id;
    auto spec = sleep_spec(10ms);
    spec.timeout = 100ms;
    auto waiting = (co_await eng().submit(spec)).job.id;
    auto after = (co_await eng().submit(sleep_spec(10ms))).job.id;

    auto done = co_await eng().get(waiting, 5000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(done.state, job_state::timed_out);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "timeout");
    EXPECT_FALSE(done.started_at.has_value());  // never left the queue
    EXPECT_GE(elapsed, 90.0);
    EXPECT_LT(elapsed, 250.0);  // well before the blocker ends at 300 ms
    EXPECT_EQ((co_await eng().get(blocker)).state, job_state::running);
    EXPECT_EQ(eng().queued(), 1u);  // only `after` is still waiting

    // The timed-out job left the line: `after` gets the slot next.
    EXPECT_EQ((co_await eng().get(after, 5000ms)).state, job_state::succeeded);
    EXPECT_EQ(observer.started(), (std::vector<job_id>{blocker, after}));
  });
}

TEST_F(engine_test, TimedOutJobRunsItsCleanupFirst) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(1000ms);
    spec.timeout = 50ms;
    sleep_of(spec).cleanup = 100ms;
    const auto t0 = steady_clock::now();
    auto id = (co_await eng().submit(spec)).job.id;
    co_await sleep_for(100ms);  // past the timeout, inside the cleanup
    EXPECT_EQ((co_await eng().get(id)).state, job_state::running);
    auto done = co_await eng().get(id, 5000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(done.state, job_state::timed_out);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "timeout");
    EXPECT_GE(elapsed, 140.0);
    EXPECT_LE(elapsed, 800.0);
  });
}

TEST_F(engine_test, TimeoutDuringBackoffEndsTheJob) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(10ms);
    sleep_of(spec).fail = "nope";
    spec.retry = fixed_retry(5, 1000ms);
    spec.timeout = 100ms;
    const auto t0 = steady_clock::now();
    auto id = (co_await eng().submit(spec)).job.id;
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::timed_out);
    EXPECT_EQ(done.attempts, 1);
    EXPECT_LE(ms_since(t0), 600.0);
  });
}

TEST_F(engine_test, WholeJobTimeoutWinsOverAttemptTimeouts) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(1000ms);
    spec.attempt_timeout = 500ms;
    spec.retry = fixed_retry(3, 10ms);
    spec.timeout = 80ms;
    const auto t0 = steady_clock::now();
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    EXPECT_EQ(done.state, job_state::timed_out);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "timeout");
    EXPECT_EQ(done.attempts, 1);
    EXPECT_LE(ms_since(t0), 400.0);
    EXPECT_TRUE(observer.backoffs().empty());  // the timeout is not a retried failure
  });
}

TEST_F(engine_test, AttemptTimeoutWithinAWholeJobTimeoutEndsFailed) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(1000ms);
    spec.attempt_timeout = 30ms;
    spec.timeout = 2000ms;
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    EXPECT_EQ(done.state, job_state::failed);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "timeout");
    EXPECT_EQ(done.attempts, 1);
  });
}

// ---- attempts and retries -------------------------------------------------------------------

TEST_F(engine_test, WithoutRetryAJobMakesOneAttempt) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5ms);
    sleep_of(spec).fail_attempts = 1;
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    EXPECT_EQ(done.state, job_state::failed);
    EXPECT_EQ(done.attempts, 1);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "failed");
  });
}

TEST_F(engine_test, RetriesUntilAnAttemptSucceeds) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5ms);
    sleep_of(spec).fail_attempts = 2;
    spec.retry = fixed_retry(3, 10ms);
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    EXPECT_EQ(done.state, job_state::succeeded);
    EXPECT_EQ(done.attempts, 3);
    EXPECT_FALSE(done.error.has_value());
    EXPECT_EQ(result_of(done), (json{{"slept_ms", 5}}));
    EXPECT_EQ(observer.backoffs(), (std::vector<millis>{10ms, 20ms}));
  });
}

TEST_F(engine_test, FailsWithTheLastErrorOnceAttemptsRunOut) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5ms);
    sleep_of(spec).fail = "boom";
    spec.retry = fixed_retry(2, 10ms);
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    EXPECT_EQ(done.state, job_state::failed);
    EXPECT_EQ(done.attempts, 2);
    EXPECT_EQ(done.error, (job_error{"failed", "boom"}));
    EXPECT_EQ(done.result, nullptr);
    EXPECT_EQ(observer.backoffs().size(), 1u);
  });
}

TEST_F(engine_test, AttemptTimeoutFailsTheAttemptAndIsRetried) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(200ms);
    spec.attempt_timeout = 30ms;
    spec.retry = fixed_retry(2, 10ms);
    const auto t0 = steady_clock::now();
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(done.state, job_state::failed);  // never timed_out: only timeout_ms does that
    EXPECT_EQ(done.attempts, 2);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "timeout");
    EXPECT_GE(elapsed, 65.0);   // 30 + 10 + 30
    EXPECT_LT(elapsed, 190.0);  // both attempts were cut short of 200 ms
  });
}

TEST_F(engine_test, BackoffIsWaitedBetweenAttempts) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(1ms);
    sleep_of(spec).fail = "again";
    spec.retry = fixed_retry(3, 50ms, 2.0);
    const auto t0 = steady_clock::now();
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(done.state, job_state::failed);
    EXPECT_EQ(done.attempts, 3);
    EXPECT_GE(elapsed, 150.0);  // 50 + 100
    EXPECT_LE(elapsed, 700.0);
    EXPECT_EQ(observer.backoffs(), (std::vector<millis>{50ms, 100ms}));
  });
}

TEST_F(engine_test, BackoffIsCappedByMaxBackoff) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(1ms);
    sleep_of(spec).fail = "again";
    spec.retry = retry_policy{4, millis{20}, 10.0, millis{50}, false};
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    EXPECT_EQ(done.attempts, 4);
    EXPECT_EQ(observer.backoffs(), (std::vector<millis>{20ms, 50ms, 50ms}));
  });
}

TEST_F(engine_test, CancelDuringBackoffEndsTheJobWithoutAnotherAttempt) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(10ms);
    sleep_of(spec).fail = "flaky";
    spec.retry = fixed_retry(3, 500ms);
    auto id = (co_await eng().submit(spec)).job.id;
    co_await sleep_for(100ms);  // attempt 1 failed at ~10 ms; now in a 500 ms backoff
    auto mid = co_await eng().get(id);
    EXPECT_EQ(mid.state, job_state::running);
    EXPECT_EQ(mid.attempts, 1);

    const auto t0 = steady_clock::now();
    co_await eng().cancel(id, "enough");
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::cancelled);
    EXPECT_EQ(done.error, (job_error{"cancelled", "enough"}));
    EXPECT_EQ(done.attempts, 1);
    EXPECT_LE(ms_since(t0), 200.0);
    co_await sleep_for(500ms);  // past where attempt 2 would have run
    EXPECT_EQ((co_await eng().get(id)).attempts, 1);
  });
}

TEST_F(engine_test, CustomResultIsReturned) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5ms);
    sleep_of(spec).result = json{{"answer", 42}, {"list", {1, 2}}};
    auto done = co_await eng().get((co_await eng().submit(spec)).job.id, 5000ms);
    EXPECT_EQ(done.state, job_state::succeeded);
    EXPECT_EQ(result_of(done), (json{{"answer", 42}, {"list", {1, 2}}}));
  });
}

}  // namespace
}  // namespace gatherd::core
