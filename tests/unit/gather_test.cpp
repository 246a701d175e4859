// engine.gather: asyncio.gather / asyncio.wait / TaskGroup semantics over jobs (gather.hpp).
// Durations are tens of milliseconds; bounds are generous, assertions are on order, states and
// counts.
#include <gtest/gtest.h>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "engine_fixture.hpp"

namespace gatherd::core {
namespace {

using namespace test;
using idx = std::vector<std::size_t>;

// The suite name starts with "Gather" so that --gtest_filter='Gather*' selects these tests.
class GatherTest : public engine_test {};

// ---- helpers (plain functions: no braced temporaries next to co_await) -----------------------

job_spec failing_spec(millis duration, std::string message = "boom") {
  auto s = sleep_spec(duration);
  sleep_of(s).fail = std::move(message);
  return s;
}

job_spec cleanup_spec(millis duration, millis cleanup) {
  auto s = sleep_spec(duration);
  sleep_of(s).cleanup = cleanup;
  return s;
}

job_spec tagged_spec(millis duration, int tag) {
  auto s = sleep_spec(duration);
  sleep_of(s).result = json{{"tag", tag}};
  return s;
}

template <class... E>
std::vector<gather_entry> entries(E... e) {
  std::vector<gather_entry> v;
  (v.emplace_back(std::move(e)), ...);
  return v;
}

gather_options options(return_when when = return_when::all_completed) {
  gather_options o;
  o.when = when;
  return o;
}

// `done` with its tail from `from` on sorted: for jobs whose relative finish order is not
// specified (e.g. several cancelled at once with the same cleanup).
idx sorted_tail(idx v, std::size_t from) {
  if (from < v.size()) std::sort(v.begin() + static_cast<std::ptrdiff_t>(from), v.end());
  return v;
}

bool all_distinct_ids(const gather_result& r) {
  std::set<std::string> ids;
  for (const auto& j : r.jobs) ids.insert(j.id.to_string());
  return ids.size() == r.jobs.size();
}

// ---- all_completed --------------------------------------------------------------------------

TEST_F(GatherTest, AllCompletedKeepsInputOrderUnderOutOfOrderCompletion) {
  run([&]() -> awaitable<void> {
    auto es = entries(tagged_spec(150ms, 0), tagged_spec(50ms, 1), tagged_spec(100ms, 2));
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), options());
    const double elapsed = ms_since(t0);

    EXPECT_EQ(r.outcome, gather_outcome::completed);
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_TRUE(all_distinct_ids(r));
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(r.jobs[i].state, job_state::succeeded) << i;
      EXPECT_EQ(result_of(r.jobs[i]), (json{{"tag", i}})) << "jobs[] must be in input order, " << i;
    }
    EXPECT_EQ(r.done, (idx{1, 2, 0}));  // completion order
    EXPECT_TRUE(r.pending.empty());
    EXPECT_FALSE(r.first_error.has_value());
    EXPECT_GE(elapsed, 140.0);
    EXPECT_LE(elapsed, 1000.0);
    EXPECT_GE(r.elapsed.count(), 140);
    EXPECT_LE(r.elapsed.count(), 1000);
    EXPECT_EQ(observer.finished().size(), 3u);
  });
}

TEST_F(GatherTest, AllCompletedMixesExistingIdsAndInlineSpecs) {
  run([&]() -> awaitable<void> {
    // Scaled: the order needs the gather admitted within 50 ms of `existing` (slower in TSan).
    auto existing = (co_await eng().submit(tagged_spec(scaled(80ms), 7))).job.id;
    auto es = entries(tagged_spec(scaled(30ms), 0), existing, tagged_spec(scaled(120ms), 2));
    auto r = co_await eng().gather(std::move(es), options());
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_EQ(r.jobs[1].id, existing);
    EXPECT_EQ(result_of(r.jobs[1]), (json{{"tag", 7}}));
    EXPECT_EQ(result_of(r.jobs[0]), (json{{"tag", 0}}));
    EXPECT_EQ(result_of(r.jobs[2]), (json{{"tag", 2}}));
    EXPECT_EQ(r.done, (idx{0, 1, 2}));
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    auto page = co_await eng().list(query());
    EXPECT_EQ(page.jobs.size(), 3u);  // the id was gathered, not resubmitted
  });
}

TEST_F(GatherTest, ReturnExceptionsTrueWaitsForAllAndReportsTheEarliestFinishingFailure) {
  run([&]() -> awaitable<void> {
    auto es = entries(failing_spec(100ms, "late"), failing_spec(50ms, "early"), sleep_spec(150ms));
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), options());
    EXPECT_GE(ms_since(t0), 140.0);
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{1, 0, 2}));
    EXPECT_TRUE(r.pending.empty());
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_EQ(r.jobs[0].state, job_state::failed);
    EXPECT_EQ(r.jobs[1].state, job_state::failed);
    EXPECT_EQ(r.jobs[2].state, job_state::succeeded);
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);  // earliest finishing, not lowest index
    EXPECT_EQ(r.first_error->id, r.jobs[1].id);
    EXPECT_EQ(r.first_error->error, (job_error{"failed", "early"}));
  });
}

TEST_F(GatherTest, ReturnExceptionsFalseReturnsAtTheFirstFailureAndLeavesTheRestRunning) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(300ms), failing_spec(80ms, "bad"), sleep_spec(40ms));
    auto o = options();
    o.return_exceptions = false;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 70.0);
    EXPECT_LT(elapsed, 250.0);
    EXPECT_EQ(r.outcome, gather_outcome::failed);
    EXPECT_EQ(r.done, (idx{2, 1}));
    EXPECT_EQ(r.pending, (idx{0}));
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_EQ(r.jobs[0].state, job_state::running);
    EXPECT_FALSE(r.jobs[0].cancel_requested);
    EXPECT_EQ(r.jobs[1].state, job_state::failed);
    EXPECT_EQ(r.jobs[2].state, job_state::succeeded);
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.first_error->error, (job_error{"failed", "bad"}));

    // Without cancel_pending the rest keeps running to its own end.
    auto later = co_await eng().get(r.jobs[0].id, 5000ms);
    EXPECT_EQ(later.state, job_state::succeeded);
    EXPECT_FALSE(later.cancel_requested);
  });
}

// asyncio.gather(return_exceptions=False) raises even when the failing awaitable is the last one
// to finish: the failure still ends the wait, so the outcome is `failed`.
TEST_F(GatherTest, ReturnExceptionsFalseWithTheLastFinishingJobFailingIsFailed) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(30ms), failing_spec(80ms, "last"));
    auto o = options();
    o.return_exceptions = false;
    auto r = co_await eng().gather(std::move(es), o);
    EXPECT_EQ(r.done, (idx{0, 1}));
    EXPECT_TRUE(r.pending.empty());
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.outcome, gather_outcome::failed)
        << "a failure ended the wait (return_exceptions=false), even though it was the last job";
  });
}

// ---- first_completed / first_exception ------------------------------------------------------

TEST_F(GatherTest, FirstCompletedReturnsAtTheFirstFinishEvenWhenItFails) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(200ms), failing_spec(100ms, "first"), sleep_spec(300ms),
                      sleep_spec(150ms));
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), options(return_when::first_completed));
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 90.0);
    EXPECT_LT(elapsed, 145.0);  // before the 150 ms job
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{1}));
    EXPECT_EQ(r.pending, (idx{0, 2, 3}));
    require(r.jobs.size() == 4, "four jobs reported");
    EXPECT_EQ(r.jobs[1].state, job_state::failed);
    for (std::size_t i : {0u, 2u, 3u}) {
      EXPECT_EQ(r.jobs[i].state, job_state::running) << i;
      EXPECT_FALSE(r.jobs[i].cancel_requested) << i;
    }
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.first_error->error, (job_error{"failed", "first"}));

    // asyncio.wait semantics: the pending ones keep running.
    for (std::size_t i : {0u, 2u, 3u}) {
      auto later = co_await eng().get(r.jobs[i].id, 5000ms);
      EXPECT_EQ(later.state, job_state::succeeded) << i;
      EXPECT_FALSE(later.cancel_requested) << i;
    }
  });
}

TEST_F(GatherTest, FirstCompletedWithCancelPendingCancelsTheRestAfterTheirCleanup) {
  run([&]() -> awaitable<void> {
    auto es = entries(cleanup_spec(2000ms, 60ms), sleep_spec(40ms), cleanup_spec(2000ms, 60ms));
    auto o = options(return_when::first_completed);
    o.cancel_pending = true;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 90.0);  // 40 ms + 60 ms of cleanup
    EXPECT_LT(elapsed, 1000.0);
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(sorted_tail(r.done, 1), (idx{1, 0, 2}));
    EXPECT_TRUE(r.pending.empty());
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_EQ(r.jobs[1].state, job_state::succeeded);
    for (std::size_t i : {0u, 2u}) {
      EXPECT_EQ(r.jobs[i].state, job_state::cancelled) << i;
      EXPECT_TRUE(r.jobs[i].cancel_requested) << i;
      require(r.jobs[i].error.has_value(), "cancelled job has an error");
      EXPECT_EQ(r.jobs[i].error->type, "cancelled") << i;
    }
    // Jobs the gather cancelled are never its first error.
    EXPECT_FALSE(r.first_error.has_value());
    EXPECT_EQ(eng().running(), 0u);
  });
}

TEST_F(GatherTest, FirstExceptionReturnsAtTheFirstFailure) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(40ms), failing_spec(120ms, "oops"), sleep_spec(400ms));
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), options(return_when::first_exception));
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 110.0);  // a success does not end a first_exception wait
    EXPECT_LT(elapsed, 350.0);
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{0, 1}));
    EXPECT_EQ(r.pending, (idx{2}));
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_EQ(r.jobs[2].state, job_state::running);
    EXPECT_FALSE(r.jobs[2].cancel_requested);
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.first_error->error, (job_error{"failed", "oops"}));
  });
}

TEST_F(GatherTest, FirstExceptionCountsTimedOutJobsAsFailures) {
  run([&]() -> awaitable<void> {
    auto slow = sleep_spec(2000ms);
    slow.timeout = 60ms;
    auto es = entries(sleep_spec(1000ms), slow);
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), options(return_when::first_exception));
    EXPECT_LT(ms_since(t0), 500.0);
    EXPECT_EQ(r.done, (idx{1}));
    EXPECT_EQ(r.pending, (idx{0}));
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.first_error->error.type, "timeout");
    EXPECT_EQ(r.jobs[1].state, job_state::timed_out);
  });
}

TEST_F(GatherTest, FirstExceptionWithoutAnyFailureWaitsForAll) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(80ms), sleep_spec(30ms));
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), options(return_when::first_exception));
    EXPECT_GE(ms_since(t0), 70.0);
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{1, 0}));
    EXPECT_TRUE(r.pending.empty());
    EXPECT_FALSE(r.first_error.has_value());
  });
}

TEST_F(GatherTest, FirstExceptionWithCancelPendingCancelsTheRest) {
  run([&]() -> awaitable<void> {
    auto es = entries(cleanup_spec(2000ms, 50ms), failing_spec(40ms, "x"));
    auto o = options(return_when::first_exception);
    o.cancel_pending = true;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    EXPECT_GE(ms_since(t0), 80.0);
    EXPECT_LT(ms_since(t0), 1000.0);
    EXPECT_EQ(r.outcome, gather_outcome::completed);  // first_exception returning normally
    EXPECT_EQ(r.done, (idx{1, 0}));
    EXPECT_TRUE(r.pending.empty());
    EXPECT_EQ(r.jobs[0].state, job_state::cancelled);
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
  });
}

// ---- cancel_on_error (TaskGroup) ------------------------------------------------------------

TEST_F(GatherTest, CancelOnErrorCancelsTheOthersAndReturnsOnlyAfterTheirCleanup) {
  run([&]() -> awaitable<void> {
    auto es = entries(cleanup_spec(3000ms, 80ms), failing_spec(50ms, "trigger"),
                      cleanup_spec(3000ms, 80ms), sleep_spec(20ms));
    auto o = options();
    o.cancel_on_error = true;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 120.0);  // 50 ms to the failure + 80 ms of cleanup
    EXPECT_LT(elapsed, 1500.0);
    EXPECT_EQ(r.outcome, gather_outcome::failed);
    EXPECT_EQ(sorted_tail(r.done, 2), (idx{3, 1, 0, 2}));
    EXPECT_TRUE(r.pending.empty());
    require(r.jobs.size() == 4, "four jobs reported");
    EXPECT_EQ(r.jobs[3].state, job_state::succeeded);
    EXPECT_EQ(r.jobs[1].state, job_state::failed);
    for (std::size_t i : {0u, 2u}) {
      EXPECT_EQ(r.jobs[i].state, job_state::cancelled) << i;
      EXPECT_TRUE(r.jobs[i].cancel_requested) << i;
      EXPECT_TRUE(r.jobs[i].finished_at.has_value()) << i;
      require(r.jobs[i].error.has_value(), "cancelled job has an error");
      EXPECT_EQ(r.jobs[i].error->type, "cancelled") << i;
      // Really finished when the gather returned, not just reported so.
      EXPECT_EQ((co_await eng().get(r.jobs[i].id)).state, job_state::cancelled) << i;
    }
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.first_error->error, (job_error{"failed", "trigger"}));
    EXPECT_EQ(eng().running(), 0u);
  });
}

TEST_F(GatherTest, CancelOnErrorCancelsQueuedJobsWithoutStartingThem) {
  config.max_running = 1;
  run([&]() -> awaitable<void> {
    auto failed = (co_await eng().submit(failing_spec(10ms, "before"))).job.id;
    EXPECT_EQ((co_await eng().get(failed, 5000ms)).state, job_state::failed);
    // The first inline spec takes the only run slot, the second waits queued.
    auto es = entries(cleanup_spec(3000ms, 40ms), failed, sleep_spec(10ms));
    auto o = options();
    o.cancel_on_error = true;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 30.0);  // the running one's cleanup was awaited
    EXPECT_LT(elapsed, 1000.0);
    EXPECT_EQ(r.outcome, gather_outcome::failed);
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_EQ(r.jobs[2].state, job_state::cancelled);
    EXPECT_TRUE(r.jobs[2].cancel_requested);
    EXPECT_FALSE(r.jobs[2].started_at.has_value());
    EXPECT_FALSE(observer.was_started(r.jobs[2].id));
    EXPECT_EQ(r.jobs[0].state, job_state::cancelled);
    EXPECT_TRUE(r.jobs[0].started_at.has_value());
    EXPECT_EQ(r.done, (idx{1, 2, 0}));  // queued: cancelled at once; running: after cleanup
    EXPECT_TRUE(r.pending.empty());
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.first_error->error, (job_error{"failed", "before"}));
    EXPECT_EQ(eng().queued(), 0u);
    EXPECT_EQ(eng().running(), 0u);
  });
}

TEST_F(GatherTest, CancelOnErrorWithAnAlreadyFailedJobCancelsTheRestAtOnce) {
  run([&]() -> awaitable<void> {
    auto failed = (co_await eng().submit(failing_spec(10ms, "before"))).job.id;
    EXPECT_EQ((co_await eng().get(failed, 5000ms)).state, job_state::failed);
    auto es = entries(cleanup_spec(3000ms, 40ms), failed);
    auto o = options();
    o.cancel_on_error = true;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    EXPECT_LT(ms_since(t0), 1000.0);
    EXPECT_EQ(r.outcome, gather_outcome::failed);
    EXPECT_EQ(r.done, (idx{1, 0}));
    EXPECT_EQ(r.jobs[0].state, job_state::cancelled);
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.first_error->error, (job_error{"failed", "before"}));
  });
}

// TaskGroup raises when its last task fails too: the failure ends the wait, outcome `failed`.
TEST_F(GatherTest, CancelOnErrorWithTheLastFinishingJobFailingIsFailed) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(20ms), failing_spec(60ms, "last"));
    auto o = options();
    o.cancel_on_error = true;
    auto r = co_await eng().gather(std::move(es), o);
    EXPECT_EQ(r.done, (idx{0, 1}));
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
    EXPECT_EQ(r.outcome, gather_outcome::failed)
        << "a failure ended the wait (cancel_on_error=true), even though it was the last job";
  });
}

// ---- timeout --------------------------------------------------------------------------------

TEST_F(GatherTest, TimeoutReturnsTimedOutAndLeavesPendingJobsRunning) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(30ms), sleep_spec(400ms));
    auto o = options();
    o.timeout = 100ms;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 90.0);
    EXPECT_LT(elapsed, 350.0);
    EXPECT_EQ(r.outcome, gather_outcome::timed_out);
    EXPECT_EQ(r.done, (idx{0}));
    EXPECT_EQ(r.pending, (idx{1}));
    require(r.jobs.size() == 2, "two jobs reported");
    EXPECT_EQ(r.jobs[1].state, job_state::running);
    EXPECT_FALSE(r.jobs[1].cancel_requested);
    EXPECT_FALSE(r.first_error.has_value());

    auto later = co_await eng().get(r.jobs[1].id, 5000ms);
    EXPECT_EQ(later.state, job_state::succeeded);
    EXPECT_FALSE(later.cancel_requested);
  });
}

TEST_F(GatherTest, TimeoutWithCancelPendingCancelsThePendingJobsAfterTheirCleanup) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(30ms), cleanup_spec(3000ms, 60ms), cleanup_spec(3000ms, 60ms));
    auto o = options();
    o.timeout = 100ms;
    o.cancel_pending = true;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 150.0);  // 100 ms timeout + 60 ms cleanup
    EXPECT_LT(elapsed, 1500.0);
    EXPECT_EQ(r.outcome, gather_outcome::timed_out);
    EXPECT_EQ(sorted_tail(r.done, 1), (idx{0, 1, 2}));
    EXPECT_TRUE(r.pending.empty());
    for (std::size_t i : {1u, 2u}) {
      EXPECT_EQ(r.jobs[i].state, job_state::cancelled) << i;
      EXPECT_TRUE(r.jobs[i].cancel_requested) << i;
    }
    EXPECT_FALSE(r.first_error.has_value());  // the gather's own cancellations are not errors
    EXPECT_EQ(eng().running(), 0u);
  });
}

TEST_F(GatherTest, TimeoutDoesNotFireWhenEverythingFinishesFirst) {
  run([&]() -> awaitable<void> {
    auto es = entries(sleep_spec(20ms), sleep_spec(40ms));
    auto o = options();
    o.timeout = 2000ms;
    o.cancel_pending = true;
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), o);
    EXPECT_LT(ms_since(t0), 1000.0);
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{0, 1}));
  });
}

// ---- ids: repeated, finished, unknown -------------------------------------------------------

TEST_F(GatherTest, ARepeatedIdIsReportedAtBothIndices) {
  run([&]() -> awaitable<void> {
    // Scaled: the order needs the gather admitted within 50 ms of `a` (slower in TSan).
    auto a = (co_await eng().submit(failing_spec(scaled(80ms), "dup"))).job.id;
    auto es = entries(a, sleep_spec(scaled(30ms)), a);
    auto r = co_await eng().gather(std::move(es), options());
    require(r.jobs.size() == 3, "three entries reported");
    EXPECT_EQ(r.jobs[0].id, a);
    EXPECT_EQ(r.jobs[2].id, a);
    EXPECT_NE(r.jobs[1].id, a);
    EXPECT_EQ(r.jobs[0].state, job_state::failed);
    EXPECT_EQ(r.jobs[2].state, job_state::failed);
    EXPECT_EQ(r.done, (idx{1, 0, 2}));
    EXPECT_TRUE(r.pending.empty());
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 0u);
    EXPECT_EQ(r.first_error->id, a);
    EXPECT_EQ((co_await eng().list(query())).jobs.size(), 2u);
  });
}

TEST_F(GatherTest, ARepeatedIdEndsAFirstCompletedWaitAtBothIndices) {
  run([&]() -> awaitable<void> {
    auto a = (co_await eng().submit(sleep_spec(40ms))).job.id;
    auto es = entries(a, sleep_spec(1000ms), a);
    auto r = co_await eng().gather(std::move(es), options(return_when::first_completed));
    EXPECT_EQ(r.done, (idx{0, 2}));
    EXPECT_EQ(r.pending, (idx{1}));
  });
}

TEST_F(GatherTest, AlreadyFinishedJobsReturnAtOnceInTheOrderTheyFinished) {
  run([&]() -> awaitable<void> {
    // One batch, admitted at one instant: they finish in the order of their durations however
    // slow each hop onto the strand is (TSan, a loaded machine).
    std::vector<job_spec> specs;
    specs.push_back(sleep_spec(90ms));
    specs.push_back(failing_spec(20ms, "a"));
    specs.push_back(sleep_spec(50ms));
    auto subs = co_await eng().submit_batch(specs);
    require(subs.size() == 3, "3 submissions");
    auto c = subs[0].job.id, a = subs[1].job.id, b = subs[2].job.id;
    EXPECT_EQ((co_await eng().get(c, 5000ms)).state, job_state::succeeded);
    EXPECT_EQ((co_await eng().get(a)).state, job_state::failed);
    EXPECT_EQ((co_await eng().get(b)).state, job_state::succeeded);

    auto es = entries(b, c, a);
    const auto t0 = steady_clock::now();
    auto r = co_await eng().gather(std::move(es), options());
    EXPECT_LT(ms_since(t0), 50.0 * time_scale());
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{2, 0, 1}));  // a, b, c: by finish time
    EXPECT_TRUE(r.pending.empty());
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 2u);
    EXPECT_EQ(r.first_error->id, a);
    EXPECT_LT(r.elapsed.count(), 50.0 * time_scale());
  });
}

TEST_F(GatherTest, AlreadyFinishedJobsComeFirstInDoneAndEndAFirstCompletedWaitAtOnce) {
  run([&]() -> awaitable<void> {
    // One batch, admitted at one instant: `early` finishes first however slow a hop is (TSan).
    std::vector<job_spec> specs;
    specs.push_back(sleep_spec(50ms));
    specs.push_back(sleep_spec(10ms));
    auto subs = co_await eng().submit_batch(specs);
    require(subs.size() == 2, "2 submissions");
    auto late = subs[0].job.id, early = subs[1].job.id;
    EXPECT_EQ((co_await eng().get(late, 5000ms)).state, job_state::succeeded);

    auto es1 = entries(sleep_spec(2000ms), late, early);
    const auto t0 = steady_clock::now();
    auto r1 = co_await eng().gather(std::move(es1), options(return_when::first_completed));
    EXPECT_LT(ms_since(t0), 50.0 * time_scale());
    EXPECT_EQ(r1.done, (idx{2, 1}));
    EXPECT_EQ(r1.pending, (idx{0}));

    // all_completed: finished jobs first, then the others as they finish.
    auto es2 = entries(sleep_spec(40ms), late, early);
    auto r2 = co_await eng().gather(std::move(es2), options());
    EXPECT_EQ(r2.done, (idx{2, 1, 0}));
  });
}

TEST_F(GatherTest, AnUnknownIdIsRefusedBeforeAnythingIsSubmitted) {
  run([&]() -> awaitable<void> {
    // Scaled: `known` must outlast the refused gather and the listing (slower in TSan).
    auto known = (co_await eng().submit(sleep_spec(scaled(30ms)))).job.id;
    auto es = entries(sleep_spec(10ms), known, job_id::random(), sleep_spec(10ms));
    EXPECT_EQ(co_await error_of(eng().gather(std::move(es), options())), engine_errc::not_found);
    auto page = co_await eng().list(query());
    require(page.jobs.size() == 1, "nothing but `known` exists");
    EXPECT_EQ(page.jobs[0].id, known);
    EXPECT_EQ(eng().queued() + eng().running(), 1u);
    // The known job was not disturbed.
    auto k = co_await eng().get(known, 5000ms);
    EXPECT_EQ(k.state, job_state::succeeded);
    EXPECT_FALSE(k.cancel_requested);
  });
}

TEST_F(GatherTest, InlineSpecsAreAdmittedAllOrNothing) {
  config.max_running = 1;
  config.max_queued = 2;
  run([&]() -> awaitable<void> {
    auto blocker = (co_await eng().submit(sleep_spec(150ms))).job.id;  // room left: 2 queued

    auto too_many = entries(blocker, sleep_spec(10ms), sleep_spec(10ms), sleep_spec(10ms));
    EXPECT_EQ(co_await error_of(eng().gather(std::move(too_many), options())),
              engine_errc::queue_full);
    EXPECT_EQ(observer.rejected("queue_full"), 3u);
    EXPECT_EQ((co_await eng().list(query())).jobs.size(), 1u);  // nothing created
    EXPECT_EQ(eng().queued(), 0u);

    auto fits = entries(sleep_spec(10ms), blocker, sleep_spec(10ms));
    auto r = co_await eng().gather(std::move(fits), options());
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{1, 0, 2}));  // the blocker holds the only run slot
    EXPECT_EQ((co_await eng().list(query())).jobs.size(), 3u);
  });
}

TEST_F(GatherTest, AnInlineSpecWithAUsedIdempotencyKeyGathersTheExistingJob) {
  run([&]() -> awaitable<void> {
    auto spec = tagged_spec(40ms, 1);
    spec.idempotency_key = "k1";
    spec.fingerprint = "fp1";
    auto first = (co_await eng().submit(spec)).job.id;
    auto es = entries(spec, sleep_spec(10ms));
    auto r = co_await eng().gather(std::move(es), options());
    require(r.jobs.size() == 2, "two jobs reported");
    EXPECT_EQ(r.jobs[0].id, first);
    EXPECT_EQ(result_of(r.jobs[0]), (json{{"tag", 1}}));
    EXPECT_EQ((co_await eng().list(query())).jobs.size(), 2u);
  });
}

// ---- abandonment: the caller stops waiting ------------------------------------------------

TEST_F(GatherTest, CancellingTheCallerAbandonsTheGatherAndCancelsOnlyItsInlineJobs) {
  using namespace net::experimental::awaitable_operators;
  run([&]() -> awaitable<void> {
    const auto existing = (co_await eng().submit(sleep_spec(150ms))).job.id;
    auto es = entries(existing, sleep_spec(5000ms));
    const auto t0 = steady_clock::now();
    // The caller gives up after 40 ms (as a server does when the client disconnects).
    auto first = co_await (eng().gather(std::move(es), options()) || sleep_for(40ms));
    EXPECT_LT(ms_since(t0), 1000.0);  // not the 5 s of the inline job
    require(first.index() == 1, "the caller's timer ends the wait");

    auto all = co_await eng().list(query());
    require(all.jobs.size() == 2, "the existing and the inline job");
    const auto inline_id = all.jobs[0].id == existing ? all.jobs[1].id : all.jobs[0].id;
    auto stopped = co_await eng().get(inline_id, 2000ms);
    EXPECT_EQ(stopped.state, job_state::cancelled);
    require(stopped.error.has_value(), "a cancelled job has an error");
    EXPECT_EQ(stopped.error->message, "its gather's client went away");
    auto kept = co_await eng().get(existing, 2000ms);
    EXPECT_EQ(kept.state, job_state::succeeded);  // a job the gather did not submit runs on
    EXPECT_FALSE(kept.cancel_requested);
  });
}

// ---- shutdown -------------------------------------------------------------------------------

TEST_F(GatherTest, AGatherDuringShutdownCompletesWhenItsJobsAreCancelled) {
  using namespace net::experimental::awaitable_operators;
  run([&]() -> awaitable<void> {
    auto es = entries(cleanup_spec(5000ms, 50ms), sleep_spec(5000ms), sleep_spec(20ms));
    auto shut_down_later = [&]() -> awaitable<void> {
      co_await sleep_for(60ms);
      co_await eng().shutdown(millis{0});
    };
    const auto t0 = steady_clock::now();
    auto r = co_await (eng().gather(std::move(es), options()) && shut_down_later());
    const double elapsed = ms_since(t0);
    EXPECT_GE(elapsed, 100.0);  // 60 ms + 50 ms of cleanup
    EXPECT_LT(elapsed, 2000.0);
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(r.done, (idx{2, 1, 0}));  // job 1 has no cleanup: it ends before job 0
    EXPECT_TRUE(r.pending.empty());
    require(r.jobs.size() == 3, "three jobs reported");
    EXPECT_EQ(r.jobs[2].state, job_state::succeeded);
    for (std::size_t i : {0u, 1u}) {
      EXPECT_EQ(r.jobs[i].state, job_state::cancelled) << i;
      require(r.jobs[i].error.has_value(), "cancelled job has an error");
      EXPECT_EQ(r.jobs[i].error->type, "cancelled") << i;
    }
    // Shutdown cancelled them, not the gather: they count as failures.
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);

    // After shutdown: ids still gather (at once), inline specs are refused.
    auto finished = entries(r.jobs[0].id, r.jobs[2].id);
    auto again = co_await eng().gather(std::move(finished), options());
    EXPECT_EQ(again.done, (idx{1, 0}));
    auto fresh = entries(r.jobs[2].id, sleep_spec(10ms));
    EXPECT_EQ(co_await error_of(eng().gather(std::move(fresh), options())),
              engine_errc::shutting_down);
  });
}

TEST_F(GatherTest, CancelOnErrorTriggeredByAShutdownCancellation) {
  using namespace net::experimental::awaitable_operators;
  run([&]() -> awaitable<void> {
    auto es = entries(cleanup_spec(5000ms, 40ms), sleep_spec(5000ms));
    auto o = options();
    o.cancel_on_error = true;
    auto shut_down_later = [&]() -> awaitable<void> {
      co_await sleep_for(40ms);
      co_await eng().shutdown(millis{0});
    };
    auto r = co_await (eng().gather(std::move(es), o) && shut_down_later());
    EXPECT_TRUE(r.pending.empty());
    EXPECT_EQ(r.jobs[0].state, job_state::cancelled);
    EXPECT_EQ(r.jobs[1].state, job_state::cancelled);
    EXPECT_EQ(r.outcome, gather_outcome::failed);
    require(r.first_error.has_value(), "first_error set");
    EXPECT_EQ(r.first_error->index, 1u);
  });
}

}  // namespace
}  // namespace gatherd::core

namespace gatherd::core {
namespace {

using namespace test;

class GatherProgressTest : public engine_test {};

// as_completed: `started` once before anything, then `done` once per index in completion order,
// each with the job as it ended; a refused gather never reports `started`.
TEST_F(GatherProgressTest, ReportsStartThenEachJobAsItIsDone) {
  run([&]() -> awaitable<void> {
    std::vector<std::string> events;
    gather_progress progress;
    progress.started = [&] { events.push_back("started"); };
    progress.done = [&](std::size_t index, const std::shared_ptr<const job_record>& job) {
      events.push_back(std::to_string(index) + ":" + std::string(to_string(job->state)));
    };
    std::vector<gather_entry> es;
    es.emplace_back(sleep_spec(90ms));
    auto failing = sleep_spec(30ms);
    sleep_of(failing).fail = "boom";
    es.emplace_back(std::move(failing));
    es.emplace_back(sleep_spec(60ms));
    auto r = co_await eng().gather(std::move(es), gather_options{}, progress);
    EXPECT_EQ(r.outcome, gather_outcome::completed);
    EXPECT_EQ(events,
              (std::vector<std::string>{"started", "1:failed", "2:succeeded", "0:succeeded"}));

    std::vector<std::string> refused;
    gather_progress watch;
    watch.started = [&] { refused.push_back("started"); };
    std::vector<gather_entry> unknown;
    unknown.emplace_back(job_id::random());
    bool not_found = false;
    try {
      co_await eng().gather(std::move(unknown), gather_options{}, watch);
    } catch (const engine_error& e) {
      not_found = e.code() == engine_errc::not_found;
    }
    EXPECT_TRUE(not_found);
    EXPECT_TRUE(refused.empty());
  });
}

}  // namespace
}  // namespace gatherd::core
