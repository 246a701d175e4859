// Cancellation, removal and shutdown.
#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace gatherd::core {
namespace {

using namespace test;

// ---- cancel ---------------------------------------------------------------------------------

TEST_F(engine_test, CancelRunningJobAwaitsItsCleanupThenReportsCancelled) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5000ms);
    sleep_of(spec).cleanup = 100ms;
    auto id = (co_await eng().submit(spec)).job.id;
    co_await sleep_for(20ms);

    const auto t0 = steady_clock::now();
    auto snap = co_await eng().cancel(id, "user asked");
    EXPECT_EQ(snap.state, job_state::running);
    EXPECT_TRUE(snap.cancel_requested);
    EXPECT_FALSE(snap.error.has_value());

    co_await sleep_for(50ms);  // in the middle of its cleanup
    auto mid = co_await eng().get(id);
    EXPECT_EQ(mid.state, job_state::running);
    EXPECT_TRUE(mid.cancel_requested);

    auto done = co_await eng().get(id, 5000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(done.state, job_state::cancelled);
    EXPECT_TRUE(done.cancel_requested);
    EXPECT_EQ(done.error, (job_error{"cancelled", "user asked"}));
    EXPECT_TRUE(done.finished_at.has_value());
    EXPECT_EQ(done.result, nullptr);
    EXPECT_GE(elapsed, 90.0);
    EXPECT_LE(elapsed, 1000.0);
    EXPECT_EQ(eng().running(), 0u);
  });
}

TEST_F(engine_test, CancelRunningJobWithoutCleanupEndsPromptly) {
  run([&]() -> awaitable<void> {
    auto id = (co_await eng().submit(sleep_spec(5000ms))).job.id;
    co_await sleep_for(20ms);
    const auto t0 = steady_clock::now();
    co_await eng().cancel(id);
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::cancelled);
    require(done.error.has_value(), "error set");
    EXPECT_EQ(done.error->type, "cancelled");
    EXPECT_LE(ms_since(t0), 300.0);
  });
}

TEST_F(engine_test, CancelQueuedJobIsImmediateAndItNeverRuns) {
  config.max_running = 1;
  run([&]() -> awaitable<void> {
    auto blocker = (co_await eng().submit(sleep_spec(150ms))).job.id;
    auto queued = (co_await eng().submit(sleep_spec(10ms))).job;
    EXPECT_EQ(queued.state, job_state::queued);
    EXPECT_EQ(eng().queued(), 1u);

    auto snap = co_await eng().cancel(queued.id, "not needed");
    EXPECT_EQ(snap.state, job_state::cancelled);
    EXPECT_TRUE(snap.cancel_requested);
    EXPECT_EQ(snap.error, (job_error{"cancelled", "not needed"}));
    EXPECT_TRUE(snap.finished_at.has_value());
    EXPECT_EQ(eng().queued(), 0u);

    EXPECT_EQ((co_await eng().get(blocker, 5000ms)).state, job_state::succeeded);
    co_await sleep_for(50ms);  // time it would have needed to run
    auto later = co_await eng().get(queued.id);
    EXPECT_EQ(later.state, job_state::cancelled);
    EXPECT_FALSE(later.started_at.has_value());
    EXPECT_EQ(later.attempts, 0);
    EXPECT_FALSE(observer.was_started(queued.id));
    EXPECT_EQ(observer.started().size(), 1u);
  });
}

TEST_F(engine_test, RepeatedCancelIsHarmlessAndTheFirstReasonWins) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5000ms);
    sleep_of(spec).cleanup = 50ms;
    auto id = (co_await eng().submit(spec)).job.id;
    co_await sleep_for(10ms);
    co_await eng().cancel(id, "first");
    auto second = co_await eng().cancel(id, "second");  // still running its cleanup: no error
    EXPECT_EQ(second.state, job_state::running);
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::cancelled);
    EXPECT_EQ(done.error, (job_error{"cancelled", "first"}));
  });
}

TEST_F(engine_test, CancelOfFinishedOrUnknownJobIsRefused) {
  run([&]() -> awaitable<void> {
    auto id = (co_await eng().submit(sleep_spec(5ms))).job.id;
    EXPECT_EQ((co_await eng().get(id, 5000ms)).state, job_state::succeeded);
    EXPECT_EQ(co_await error_of(eng().cancel(id)), engine_errc::already_finished);
    auto after = co_await eng().get(id);
    EXPECT_EQ(after.state, job_state::succeeded);  // unchanged
    EXPECT_FALSE(after.cancel_requested);

    EXPECT_EQ(co_await error_of(eng().cancel(job_id::random())), engine_errc::not_found);
  });
}

TEST_F(engine_test, CancelledJobIsNotRetried) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(1000ms);
    spec.retry = fixed_retry(3, 10ms);
    spec.attempt_timeout = 500ms;
    auto id = (co_await eng().submit(spec)).job.id;
    co_await sleep_for(50ms);
    const auto t0 = steady_clock::now();
    co_await eng().cancel(id, "stop");
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::cancelled);
    EXPECT_EQ(done.error, (job_error{"cancelled", "stop"}));
    EXPECT_EQ(done.attempts, 1);
    EXPECT_LE(ms_since(t0), 300.0);
    EXPECT_TRUE(observer.backoffs().empty());
  });
}

TEST_F(engine_test, CancelOfJobWithTimeoutIsCancelledNotTimedOut) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5000ms);
    spec.timeout = 2000ms;
    sleep_of(spec).cleanup = 30ms;
    auto id = (co_await eng().submit(spec)).job.id;
    co_await sleep_for(20ms);
    co_await eng().cancel(id, "bye");
    auto done = co_await eng().get(id, 5000ms);
    EXPECT_EQ(done.state, job_state::cancelled);
    EXPECT_EQ(done.error, (job_error{"cancelled", "bye"}));
  });
}

// ---- remove ---------------------------------------------------------------------------------

TEST_F(engine_test, RemoveRunningJobCancelsItForgetsItAndFreesItsSlot) {
  config.max_running = 1;
  run([&]() -> awaitable<void> {
    auto running = (co_await eng().submit(sleep_spec(5000ms))).job.id;
    auto next = (co_await eng().submit(sleep_spec(10ms))).job.id;
    co_await sleep_for(20ms);
    const auto t0 = steady_clock::now();
    co_await eng().remove(running);
    EXPECT_EQ(co_await error_of(eng().get(running)), engine_errc::not_found);
    EXPECT_EQ(co_await error_of(eng().cancel(running)), engine_errc::not_found);

    EXPECT_EQ((co_await eng().get(next, 5000ms)).state, job_state::succeeded);
    EXPECT_LE(ms_since(t0), 500.0);  // the slot was released by the cancellation
    EXPECT_EQ(observer.finished_state(running), job_state::cancelled);
    auto page = co_await eng().list(query());
    require(page.jobs.size() == 1, "only `next` is listed");
    EXPECT_EQ(page.jobs[0].id, next);
    EXPECT_EQ(eng().retained(), 1u);
  });
}

TEST_F(engine_test, RemoveQueuedAndFinishedJobs) {
  config.max_running = 1;
  run([&]() -> awaitable<void> {
    auto first = (co_await eng().submit(sleep_spec(50ms))).job.id;
    auto queued = (co_await eng().submit(sleep_spec(10ms))).job.id;
    co_await eng().remove(queued);
    EXPECT_EQ(co_await error_of(eng().get(queued)), engine_errc::not_found);
    EXPECT_EQ(eng().queued(), 0u);

    EXPECT_EQ((co_await eng().get(first, 5000ms)).state, job_state::succeeded);
    EXPECT_EQ(eng().retained(), 1u);
    co_await eng().remove(first);
    EXPECT_EQ(co_await error_of(eng().get(first)), engine_errc::not_found);
    EXPECT_EQ(eng().retained(), 0u);
    EXPECT_FALSE(observer.was_started(queued));
    EXPECT_EQ(co_await error_of(eng().remove(first)), engine_errc::not_found);
  });
}

// ---- shutdown -------------------------------------------------------------------------------

TEST_F(engine_test, ShutdownGraceLetsShortJobsFinish) {
  run([&]() -> awaitable<void> {
    // t0 before the submission: the job's 50 ms count from its admission, and a slow hop onto
    // the strand (TSan, a loaded machine) must not eat into the time shutdown has to wait.
    const auto t0 = steady_clock::now();
    auto id = (co_await eng().submit(sleep_spec(50ms))).job.id;
    co_await eng().shutdown(100ms);
    EXPECT_GE(ms_since(t0), 40.0);
    auto s = co_await eng().get(id);
    EXPECT_EQ(s.state, job_state::succeeded);
    EXPECT_FALSE(s.cancel_requested);
  });
}

TEST_F(engine_test, ShutdownCancelsLongJobsAfterTheGrace) {
  run([&]() -> awaitable<void> {
    auto id = (co_await eng().submit(sleep_spec(5000ms))).job.id;
    const auto t0 = steady_clock::now();
    co_await eng().shutdown(100ms);
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 90.0);
    EXPECT_LE(elapsed, 1000.0);
    auto s = co_await eng().get(id);  // returned only once the job coroutine ended
    EXPECT_EQ(s.state, job_state::cancelled);
    EXPECT_TRUE(s.cancel_requested);
    require(s.error.has_value(), "error set");
    EXPECT_EQ(s.error->type, "cancelled");
    EXPECT_EQ(eng().running(), 0u);
  });
}

TEST_F(engine_test, ShutdownAwaitsTheCleanupOfCancelledJobs) {
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5000ms);
    sleep_of(spec).cleanup = 80ms;
    auto id = (co_await eng().submit(spec)).job.id;
    const auto t0 = steady_clock::now();
    co_await eng().shutdown(50ms);
    EXPECT_GE(ms_since(t0), 120.0);  // grace + cleanup
    EXPECT_EQ((co_await eng().get(id)).state, job_state::cancelled);
  });
}

TEST_F(engine_test, ShutdownCutsACleanupThatOutlastsTheLimit) {
  config.shutdown_cleanup_limit = 100ms;
  run([&]() -> awaitable<void> {
    auto spec = sleep_spec(5000ms);
    sleep_of(spec).cleanup = 86'400'000ms;  // a day: the most a sleep may ask for
    auto id = (co_await eng().submit(spec)).job.id;
    const auto t0 = steady_clock::now();
    const shutdown_report report = co_await eng().shutdown(0ms);
    EXPECT_GE(ms_since(t0), 90.0);                  // the limit was given
    EXPECT_LE(ms_since(t0), 1000.0 * time_scale());  // and no more
    EXPECT_EQ(report.cleanups_cut, 1u);
    EXPECT_EQ(report.jobs_left, 0u);  // the second cancel ended the cleanup's wait
    EXPECT_EQ((co_await eng().get(id)).state, job_state::cancelled);
  });
}

TEST_F(engine_test, ShutdownCancelsQueuedJobsWithoutRunningThem) {
  config.max_running = 1;
  run([&]() -> awaitable<void> {
    auto a = (co_await eng().submit(sleep_spec(5000ms))).job.id;
    auto b = (co_await eng().submit(sleep_spec(10ms))).job.id;
    co_await eng().shutdown(0ms);
    EXPECT_EQ((co_await eng().get(a)).state, job_state::cancelled);
    EXPECT_EQ((co_await eng().get(b)).state, job_state::cancelled);
    EXPECT_FALSE(observer.was_started(b));
    EXPECT_EQ(eng().queued(), 0u);
  });
}

TEST_F(engine_test, SubmitAfterShutdownIsRefused) {
  run([&]() -> awaitable<void> {
    co_await eng().shutdown(0ms);
    EXPECT_EQ(co_await error_of(eng().submit(sleep_spec(10ms))), engine_errc::shutting_down);
    std::vector<job_spec> batch{sleep_spec(10ms), sleep_spec(10ms)};
    EXPECT_EQ(co_await error_of(eng().submit_batch(batch)), engine_errc::shutting_down);
    EXPECT_EQ(observer.rejected("shutting_down"), 3u);
    EXPECT_TRUE((co_await eng().list(query())).jobs.empty());
  });
}

}  // namespace
}  // namespace gatherd::core
