// Job records: idempotent submission, retention by time and by count, listing, get with wait.
#include <gtest/gtest.h>

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>

#include "engine_fixture.hpp"

namespace gatherd::core {
namespace {

using namespace test;

job_spec keyed(millis duration, std::string key, std::string fingerprint) {
  auto spec = sleep_spec(duration);
  spec.idempotency_key = std::move(key);
  spec.fingerprint = std::move(fingerprint);
  return spec;
}

job_labels label(const std::string& k, const std::string& v) {
  return {{k, v}};
}

std::vector<job_id> ids(std::initializer_list<job_id> l) {
  return l;
}

std::vector<job_id> ids_of(const job_page& page) {
  std::vector<job_id> out;
  for (auto& j : page.jobs) out.push_back(j.id);
  return out;
}

// ---- idempotency ----------------------------------------------------------------------------

TEST_F(engine_test, SameKeyAndSpecReturnsTheExistingJob) {
  run([&]() -> awaitable<void> {
    auto first = co_await eng().submit(keyed(200ms, "order-42", "fp-a"));
    EXPECT_TRUE(first.created);
    auto again = co_await eng().submit(keyed(200ms, "order-42", "fp-a"));
    EXPECT_FALSE(again.created);
    EXPECT_EQ(again.job.id, first.job.id);
    EXPECT_EQ(eng().running(), 1u);
    EXPECT_EQ((co_await eng().list(query())).jobs.size(), 1u);

    // Still replayed once the job has finished, while it is retained.
    EXPECT_EQ((co_await eng().get(first.job.id, 5000ms)).state, job_state::succeeded);
    auto later = co_await eng().submit(keyed(200ms, "order-42", "fp-a"));
    EXPECT_FALSE(later.created);
    EXPECT_EQ(later.job.id, first.job.id);
    EXPECT_EQ(later.job.state, job_state::succeeded);
  });
}

TEST_F(engine_test, SameKeyWithADifferentSpecIsAConflict) {
  run([&]() -> awaitable<void> {
    auto first = co_await eng().submit(keyed(50ms, "k", "fp-a"));
    EXPECT_EQ(co_await error_of(eng().submit(keyed(50ms, "k", "fp-b"))),
              engine_errc::idempotency_conflict);
    std::vector<job_spec> batch{sleep_spec(10ms), keyed(50ms, "k", "fp-b")};
    EXPECT_EQ(co_await error_of(eng().submit_batch(batch)), engine_errc::idempotency_conflict);
    auto page = co_await eng().list(query());
    EXPECT_EQ(ids_of(page), (std::vector<job_id>{first.job.id}));  // the batch created nothing
  });
}

TEST_F(engine_test, KeyIsFreeAgainOnceItsJobIsForgotten) {
  run([&]() -> awaitable<void> {
    auto first = co_await eng().submit(keyed(10ms, "k", "fp-a"));
    co_await eng().get(first.job.id, 5000ms);
    co_await eng().remove(first.job.id);
    auto second = co_await eng().submit(keyed(10ms, "k", "fp-b"));
    EXPECT_TRUE(second.created);
    EXPECT_NE(second.job.id, first.job.id);
  });
}

TEST_F(engine_test, BatchReplaysAKeyRepeatedWithinIt) {
  run([&]() -> awaitable<void> {
    std::vector<job_spec> batch{keyed(10ms, "k", "fp"), keyed(10ms, "k", "fp")};
    auto subs = co_await eng().submit_batch(batch);
    require(subs.size() == 2, "two submissions");
    EXPECT_TRUE(subs[0].created);
    EXPECT_FALSE(subs[1].created);
    EXPECT_EQ(subs[1].job.id, subs[0].job.id);
    EXPECT_EQ((co_await eng().list(query())).jobs.size(), 1u);
  });
}

// All or nothing: a conflict between two specs of the same batch must not leave the first created.
TEST_F(engine_test, BatchWithAConflictWithinItCreatesNothing) {
  run([&]() -> awaitable<void> {
    std::vector<job_spec> batch{keyed(10ms, "k", "fp-a"), keyed(10ms, "k", "fp-b")};
    EXPECT_EQ(co_await error_of(eng().submit_batch(batch)), engine_errc::idempotency_conflict);
    auto page = co_await eng().list(query());
    EXPECT_TRUE(page.jobs.empty()) << page.jobs.size() << " job(s) created by a refused batch";
  });
}

// A key repeated within a batch makes one job, so the batch needs room for one job only.
TEST_F(engine_test, BatchWithARepeatedKeyNeedsRoomForOneJob) {
  config.max_running = 1;
  config.max_queued = 0;
  run([&]() -> awaitable<void> {
    std::vector<job_spec> batch{keyed(10ms, "k", "fp"), keyed(10ms, "k", "fp")};
    auto error = co_await error_of(eng().submit_batch(batch));
    EXPECT_FALSE(error.has_value()) << "refused although the batch needs one slot and one is free";
  });
}

// The registry on its own: a zero limit must give an empty page, not read past an empty vector.
TEST(JobRegistry, ListWithLimitZeroReturnsAnEmptyPage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        job_registry registry(10);
        auto record = std::make_shared<job_record>();
        record->id = job_id::random();
        record->seq = 1;
        registry.add(record);
        job_query q;
        q.limit = 0;
        const auto page = registry.list(q);
        std::exit(page.jobs.empty() ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- retention ------------------------------------------------------------------------------

TEST_F(engine_test, FinishedJobsExpireAfterTheirRetention) {
  config.default_retention = 50ms;
  config.sweep_interval = 20ms;
  run([&]() -> awaitable<void> {
    eng().start();
    auto id = (co_await eng().submit(sleep_spec(10ms))).job.id;
    auto keep_spec = sleep_spec(10ms);
    keep_spec.retention = 10000ms;
    auto kept = (co_await eng().submit(keep_spec)).job.id;
    EXPECT_EQ((co_await eng().get(id, 5000ms)).state, job_state::succeeded);  // still there
    EXPECT_EQ((co_await eng().get(kept, 5000ms)).state, job_state::succeeded);
    EXPECT_EQ(eng().retained(), 2u);
    co_await sleep_for(200ms);
    EXPECT_EQ(co_await error_of(eng().get(id)), engine_errc::not_found);
    EXPECT_FALSE((co_await error_of(eng().get(kept))).has_value());  // its own retention_ms
    EXPECT_EQ(eng().retained(), 1u);
  });
}

TEST_F(engine_test, UnfinishedJobsDoNotExpire) {
  config.default_retention = 10ms;
  config.sweep_interval = 10ms;
  run([&]() -> awaitable<void> {
    eng().start();
    // Scaled: still running after the 80 ms and the hops around them (slower in TSan).
    auto id = (co_await eng().submit(sleep_spec(scaled(150ms)))).job.id;
    co_await sleep_for(80ms);
    EXPECT_EQ((co_await eng().get(id)).state, job_state::running);
    EXPECT_EQ((co_await eng().get(id, 5000ms)).state, job_state::succeeded);
  });
}

TEST_F(engine_test, MaxRetainedEvictsTheOldestFinishedJobs) {
  config.max_retained = 3;
  run([&]() -> awaitable<void> {
    std::vector<job_id> id;
    for (int i = 0; i < 5; ++i) {
      id.push_back((co_await eng().submit(sleep_spec(5ms))).job.id);
      co_await eng().get(id.back(), 5000ms);
    }
    EXPECT_EQ(co_await error_of(eng().get(id[0])), engine_errc::not_found);
    EXPECT_EQ(co_await error_of(eng().get(id[1])), engine_errc::not_found);
    for (int i = 2; i < 5; ++i) EXPECT_EQ((co_await eng().get(id[i])).state, job_state::succeeded);
    EXPECT_EQ(eng().retained(), 3u);
    auto page = co_await eng().list(query());
    EXPECT_EQ(ids_of(page), ids({id[4], id[3], id[2]}));
  });
}

TEST_F(engine_test, MaxRetainedEvictsByFinishOrderNotCreationOrder) {
  config.max_retained = 1;
  run([&]() -> awaitable<void> {
    auto slow = (co_await eng().submit(sleep_spec(120ms))).job.id;  // created first, ends last
    auto fast = (co_await eng().submit(sleep_spec(10ms))).job.id;
    auto running = (co_await eng().submit(sleep_spec(2000ms))).job.id;
    co_await eng().get(slow, 5000ms);
    EXPECT_EQ(co_await error_of(eng().get(fast)), engine_errc::not_found);
    EXPECT_EQ((co_await eng().get(slow)).state, job_state::succeeded);
    EXPECT_EQ((co_await eng().get(running)).state, job_state::running);  // unfinished: not counted
  });
}

// ---- retention by bytes ---------------------------------------------------------------------

// A sleep whose spec (its `result`) and result both weigh `bytes` payload bytes.
job_spec weighing(std::size_t bytes, millis duration = 5ms) {
  auto spec = sleep_spec(duration);
  sleep_of(spec).result = json(std::string(bytes - 2, 'r'));  // a string: its quotes count
  return spec;
}

TEST_F(engine_test, JobBytesCountTheSpecThenTheResult) {
  run([&]() -> awaitable<void> {
    auto spec = weighing(100, 200ms);
    spec.labels = label("tenant", "acme");  // 10 bytes
    auto job = (co_await eng().submit(spec)).job;
    EXPECT_EQ(eng().job_bytes(), 110u);  // running: its spec
    co_await eng().get(job.id, 5000ms);
    EXPECT_EQ(eng().job_bytes(), 110u);  // finished: labels and result
    auto failing = sleep_spec(1ms);
    sleep_of(failing).fail = "boom";  // the error's type and message count once it failed
    auto failed = (co_await eng().submit(failing)).job;
    EXPECT_EQ((co_await eng().get(failed.id, 5000ms)).state, job_state::failed);
    EXPECT_GT(eng().job_bytes(), 110u);
    co_await eng().remove(job.id);
    co_await eng().remove(failed.id);
    EXPECT_EQ(eng().job_bytes(), 0u);
  });
}

TEST_F(engine_test, MaxJobBytesEvictsTheOldestFinishedJobs) {
  config.max_job_bytes = 300;
  run([&]() -> awaitable<void> {
    std::vector<job_id> id;
    for (int i = 0; i < 5; ++i) {
      id.push_back((co_await eng().submit(weighing(100))).job.id);
      co_await eng().get(id.back(), 5000ms);
      EXPECT_LE(eng().job_bytes(), 300u);
    }
    EXPECT_EQ(co_await error_of(eng().get(id[0])), engine_errc::not_found);
    EXPECT_EQ(co_await error_of(eng().get(id[1])), engine_errc::not_found);
    for (int i = 2; i < 5; ++i) EXPECT_EQ((co_await eng().get(id[i])).state, job_state::succeeded);
    EXPECT_EQ(eng().retained(), 3u);
    EXPECT_EQ(eng().job_bytes(), 300u);
  });
}

TEST_F(engine_test, UnfinishedJobsAloneFillingMaxJobBytesRefuseSubmissions) {
  config.max_job_bytes = 300;
  run([&]() -> awaitable<void> {
    auto done = (co_await eng().submit(weighing(100))).job.id;
    co_await eng().get(done, 5000ms);
    auto a = (co_await eng().submit(weighing(100, 5000ms))).job.id;
    auto b = (co_await eng().submit(weighing(100, 5000ms))).job.id;  // 300: full
    EXPECT_EQ((co_await eng().get(done)).state, job_state::succeeded);
    co_await eng().submit(weighing(100, 5000ms));  // evicts `done` to make room
    EXPECT_EQ(co_await error_of(eng().get(done)), engine_errc::not_found);
    EXPECT_EQ(co_await error_of(eng().submit(weighing(10, 5000ms))), engine_errc::jobs_memory_full);
    std::vector<job_spec> batch{weighing(10), weighing(10)};
    EXPECT_EQ(co_await error_of(eng().submit_batch(batch)), engine_errc::jobs_memory_full);
    EXPECT_EQ(co_await error_of(eng().submit(weighing(301))), engine_errc::job_too_large);
    EXPECT_EQ(observer.rejected("jobs_memory_full"), 3u);
    // A job that ends makes room: its spec goes, its result can be evicted.
    co_await eng().cancel(a);
    co_await eng().get(a, 5000ms);
    co_await eng().submit(weighing(100, 5000ms));
    EXPECT_EQ(co_await error_of(eng().get(a)), engine_errc::not_found);
    EXPECT_EQ((co_await eng().get(b)).state, job_state::running);
  });
}

TEST_F(engine_test, AJobWhoseResultCannotFitIsForgottenAtOnce) {
  config.max_job_bytes = 300;
  run([&]() -> awaitable<void> {
    auto live = (co_await eng().submit(weighing(290, 5000ms))).job.id;
    // No spec bytes, but a result ({"slept_ms":5}, 14 bytes) that unfinished jobs leave no
    // room for: forgotten as it finishes, as with --max-retained-jobs 0.
    auto small = (co_await eng().submit(sleep_spec(5ms))).job.id;
    EXPECT_EQ(co_await error_of(eng().get(small, 5000ms)), engine_errc::not_found);
    EXPECT_EQ(eng().job_bytes(), 290u);
    EXPECT_EQ((co_await eng().get(live)).state, job_state::running);  // live data is never evicted
  });
}

// ---- listing --------------------------------------------------------------------------------

TEST_F(engine_test, ListIsNewestFirstAndFilters) {
  auto s1 = sleep_spec(5ms);
  s1.labels = {{"tenant", "a"}, {"env", "prod"}};
  auto s2 = sleep_spec(5ms);
  s2.labels = label("tenant", "b");
  auto s3 = primes_spec(100);
  s3.labels = label("tenant", "a");
  auto s4 = sleep_spec(5000ms);
  s4.labels = {{"tenant", "a"}, {"env", "dev"}};
  auto s5 = sleep_spec(5ms);
  sleep_of(s5).fail = "x";
  s5.labels = label("tenant", "b");
  const std::vector<job_spec> specs{s1, s2, s3, s4, s5};
  const job_labels tenant_a_prod{{"tenant", "a"}, {"env", "prod"}};

  run([&]() -> awaitable<void> {
    std::vector<job_id> id;
    for (const auto& s : specs) id.push_back((co_await eng().submit(s)).job.id);
    for (int i = 0; i < 5; ++i) {
      if (i != 3) co_await eng().get(id[i], 5000ms);
    }

    auto all = co_await eng().list(query());
    EXPECT_EQ(ids_of(all), ids({id[4], id[3], id[2], id[1], id[0]}));
    EXPECT_FALSE(all.next.has_value());
    require(all.jobs.size() == 5, "5 jobs");
    EXPECT_EQ(all.jobs[0].labels, s5.labels);
    EXPECT_EQ(all.jobs[2].kind, job_kind::compute);

    auto running = co_await eng().list(query(job_state::running));
    EXPECT_EQ(ids_of(running), ids({id[3]}));
    auto failed = co_await eng().list(query(job_state::failed));
    EXPECT_EQ(ids_of(failed), ids({id[4]}));
    auto succeeded = co_await eng().list(query(job_state::succeeded));
    EXPECT_EQ(ids_of(succeeded), ids({id[2], id[1], id[0]}));
    auto cancelled = co_await eng().list(query(job_state::cancelled));
    EXPECT_TRUE(cancelled.jobs.empty());
    auto compute = co_await eng().list(query({}, job_kind::compute));
    EXPECT_EQ(ids_of(compute), ids({id[2]}));
    auto tenant_a = co_await eng().list(query({}, {}, label("tenant", "a")));
    EXPECT_EQ(ids_of(tenant_a), ids({id[3], id[2], id[0]}));
    auto both_labels = co_await eng().list(query({}, {}, tenant_a_prod));
    EXPECT_EQ(ids_of(both_labels), ids({id[0]}));
    auto tenant_c = co_await eng().list(query({}, {}, label("tenant", "c")));
    EXPECT_TRUE(tenant_c.jobs.empty());
    auto combined =
        co_await eng().list(query(job_state::succeeded, job_kind::sleep, label("tenant", "a")));
    EXPECT_EQ(ids_of(combined), ids({id[0]}));
  });
}

TEST_F(engine_test, ListPagesWithLimitAndCursor) {
  std::vector<job_spec> specs;
  for (int i = 0; i < 5; ++i) {
    auto s = sleep_spec(1000ms);
    s.labels = {{"n", std::to_string(i)}, {"odd", i % 2 ? "yes" : "no"}};
    specs.push_back(s);
  }
  const auto even = label("odd", "no");
  run([&]() -> awaitable<void> {
    std::vector<job_id> id;
    for (const auto& s : specs) id.push_back((co_await eng().submit(s)).job.id);

    auto p1 = co_await eng().list(query({}, {}, {}, 2));
    EXPECT_EQ(ids_of(p1), ids({id[4], id[3]}));
    require(p1.next.has_value(), "a next cursor after page 1");
    auto p2 = co_await eng().list(query({}, {}, {}, 2, p1.next));
    EXPECT_EQ(ids_of(p2), ids({id[2], id[1]}));
    require(p2.next.has_value(), "a next cursor after page 2");
    auto p3 = co_await eng().list(query({}, {}, {}, 2, p2.next));
    EXPECT_EQ(ids_of(p3), ids({id[0]}));
    EXPECT_FALSE(p3.next.has_value());

    // A page that ends exactly at the last job has no next cursor.
    auto exact = co_await eng().list(query({}, {}, {}, 5));
    EXPECT_EQ(exact.jobs.size(), 5u);
    EXPECT_FALSE(exact.next.has_value());

    // Paging a filtered listing skips non-matching jobs.
    auto f1 = co_await eng().list(query({}, {}, even, 2));
    EXPECT_EQ(ids_of(f1), ids({id[4], id[2]}));
    require(f1.next.has_value(), "a next cursor for the filtered listing");
    auto f2 = co_await eng().list(query({}, {}, even, 2, f1.next));
    EXPECT_EQ(ids_of(f2), ids({id[0]}));
    EXPECT_FALSE(f2.next.has_value());
  });
}

// ---- get with wait --------------------------------------------------------------------------

TEST_F(engine_test, GetWithWaitReturnsAsSoonAsTheJobFinishes) {
  run([&]() -> awaitable<void> {
    // t0 before the submission: a slow hop onto the strand (TSan, a loaded machine) must not
    // eat into the 50 ms the wait has to last.
    const auto t0 = steady_clock::now();
    auto id = (co_await eng().submit(sleep_spec(50ms))).job.id;
    auto s = co_await eng().get(id, 3000ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(s.state, job_state::succeeded);
    EXPECT_GE(elapsed, 30.0);
    EXPECT_LE(elapsed, 1000.0);  // far from the 3 s wait
  });
}

TEST_F(engine_test, GetWithWaitReturnsTheUnfinishedJobAtTheWait) {
  run([&]() -> awaitable<void> {
    auto id = (co_await eng().submit(sleep_spec(1000ms))).job.id;
    const auto t0 = steady_clock::now();
    auto s = co_await eng().get(id, 100ms);
    const double elapsed = ms_since(t0);
    EXPECT_EQ(s.state, job_state::running);
    EXPECT_GE(elapsed, 95.0);
    EXPECT_LE(elapsed, 600.0);

    const auto t1 = steady_clock::now();
    EXPECT_EQ((co_await eng().get(id)).state, job_state::running);  // no wait: at once
    EXPECT_LE(ms_since(t1), 50.0 * time_scale());
  });
}

TEST_F(engine_test, ConcurrentWaitersAreAllWoken) {
  run([&]() -> awaitable<void> {
    auto id = (co_await eng().submit(sleep_spec(60ms))).job.id;
    auto ex = co_await net::this_coro::executor;
    const auto t0 = steady_clock::now();
    auto [order, e1, a, e2, b] =
        co_await net::experimental::make_parallel_group(
            net::co_spawn(ex, eng().get(id, 3000ms), net::deferred),
            net::co_spawn(ex, eng().get(id, 3000ms), net::deferred))
            .async_wait(net::experimental::wait_for_all(), net::use_awaitable);
    EXPECT_FALSE(e1);
    EXPECT_FALSE(e2);
    EXPECT_EQ(a.state, job_state::succeeded);
    EXPECT_EQ(b.state, job_state::succeeded);
    EXPECT_LE(ms_since(t0), 1000.0);
  });
}

TEST_F(engine_test, GetWithWaitOnAJobDeletedDuringTheWaitIsNotFound) {
  run([&]() -> awaitable<void> {
    auto id = (co_await eng().submit(sleep_spec(5000ms))).job.id;
    net::co_spawn(
        co_await net::this_coro::executor,
        [&, id]() -> awaitable<void> {
          co_await sleep_for(30ms);
          co_await eng().remove(id);
        },
        net::detached);
    const auto t0 = steady_clock::now();
    EXPECT_EQ(co_await error_of(eng().get(id, 3000ms)), engine_errc::not_found);
    EXPECT_LE(ms_since(t0), 1000.0);  // woken when the deleted job ended, not at the wait
  });
}

TEST_F(engine_test, GetOfUnknownJobIsNotFound) {
  run([&]() -> awaitable<void> {
    EXPECT_EQ(co_await error_of(eng().get(job_id::random())), engine_errc::not_found);
    EXPECT_EQ(co_await error_of(eng().get(job_id::random(), 50ms)), engine_errc::not_found);
  });
}

}  // namespace
}  // namespace gatherd::core
