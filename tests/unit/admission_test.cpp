// Admission and backpressure: the admission class itself (FIFO grants, withdraw, room), and the
// engine's use of it (max_running, queue_full, all-or-nothing batches).
#include "libcore/admission.hpp"

#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace gatherd::core {
namespace {

using namespace test;

// ---- the admission class directly -----------------------------------------------------------

TEST(Admission, GrantsAtOnceWhileSlotsAreFreeThenQueues) {
  net::io_context io;
  admission a(2, 2, io.get_executor());
  auto t1 = a.admit();
  auto t2 = a.admit();
  auto t3 = a.admit();
  EXPECT_TRUE(t1->granted());
  EXPECT_TRUE(t2->granted());
  EXPECT_FALSE(t3->granted());
  EXPECT_EQ(a.running(), 2u);
  EXPECT_EQ(a.queued(), 1u);
  EXPECT_TRUE(a.has_room(1));
  EXPECT_FALSE(a.has_room(2));
}

TEST(Admission, GrantsQueuedTicketsInFifoOrder) {
  net::io_context io;
  admission a(1, 3, io.get_executor());
  auto t1 = a.admit();
  auto t2 = a.admit();
  auto t3 = a.admit();
  auto t4 = a.admit();
  ASSERT_TRUE(t1->granted());
  EXPECT_FALSE(a.has_room(1));

  a.release(*t1);
  EXPECT_FALSE(t1->granted());
  EXPECT_TRUE(t2->granted());
  EXPECT_FALSE(t3->granted());
  EXPECT_FALSE(t4->granted());
  EXPECT_EQ(a.running(), 1u);  // the slot passed on, it was not freed
  EXPECT_EQ(a.queued(), 2u);

  a.release(*t2);
  EXPECT_TRUE(t3->granted());
  EXPECT_FALSE(t4->granted());

  a.release(*t3);
  EXPECT_TRUE(t4->granted());
  EXPECT_EQ(a.queued(), 0u);

  a.release(*t4);
  EXPECT_EQ(a.running(), 0u);
  EXPECT_TRUE(a.has_room(4));
  EXPECT_FALSE(a.has_room(5));
}

TEST(Admission, WithdrawFreesAQueuePlaceAndSkipsTheTicket) {
  net::io_context io;
  admission a(1, 2, io.get_executor());
  auto t1 = a.admit();
  auto t2 = a.admit();
  auto t3 = a.admit();
  EXPECT_FALSE(a.has_room(1));

  a.withdraw(*t2);
  EXPECT_EQ(a.queued(), 1u);
  EXPECT_TRUE(a.has_room(1));
  EXPECT_FALSE(a.has_room(2));

  a.release(*t1);
  EXPECT_FALSE(t2->granted());  // withdrawn: never granted
  EXPECT_TRUE(t3->granted());
  a.withdraw(*t3);  // no effect on a granted ticket
  EXPECT_TRUE(t3->granted());
  EXPECT_EQ(a.running(), 1u);
}

TEST(DrainRate, NeedsTwoDeparturesThenScalesWithTheRequest) {
  drain_rate rate;
  const auto t0 = steady_clock::now();
  EXPECT_FALSE(rate.time_for(1, t0));
  rate.record(t0);
  EXPECT_FALSE(rate.time_for(1, t0));
  for (int i = 1; i < 10; ++i) rate.record(t0 + i * 100ms);  // 10 departures over 900 ms
  EXPECT_EQ(rate.time_for(1, t0 + 1000ms), 100ms);         // 10 in 1000 ms: 100 ms each
  EXPECT_EQ(rate.time_for(5, t0 + 1000ms), 500ms);
  EXPECT_EQ(rate.time_for(1, t0 + 10000ms), 1000ms);  // a stalled drain looks slower
}

TEST(DrainRate, RemembersOnlyTheLastWindow) {
  drain_rate rate;
  const auto t0 = steady_clock::now();
  for (std::size_t i = 0; i < drain_rate::window; ++i) rate.record(t0 + i * 1000ms);  // slow
  const auto fast = t0 + drain_rate::window * 1000ms;
  for (std::size_t i = 0; i < drain_rate::window; ++i) rate.record(fast + i * 10ms);  // fast
  const auto now = fast + drain_rate::window * 10ms;
  EXPECT_EQ(rate.time_for(1, now), 10ms);
}

TEST(Admission, TimeUntilRoomFollowsTheReleaseRate) {
  net::io_context io;
  admission a(1, 1, io.get_executor());
  EXPECT_EQ(a.time_until_room(2), 0ms);
  auto t1 = a.admit();
  auto t2 = a.admit();
  EXPECT_FALSE(a.time_until_room(1));  // full, and nothing released yet: no rate to go by
  a.release(*t1);                       // t2 takes the slot
  auto t3 = a.admit();
  a.release(*t2);
  auto t4 = a.admit();
  const auto wait = a.time_until_room(1);
  ASSERT_TRUE(wait);
  EXPECT_GE(*wait, 0ms);
  EXPECT_LT(*wait, 1000ms);  // two releases just now: room is expected soon
  EXPECT_EQ(a.time_until_room(0), 0ms);
}

TEST(Admission, ReleaseOfAnUngrantedTicketChangesNothing) {
  net::io_context io;
  admission a(1, 1, io.get_executor());
  auto t1 = a.admit();
  auto t2 = a.admit();
  a.release(*t2);  // queued, holds no slot
  EXPECT_TRUE(t1->granted());
  EXPECT_FALSE(t2->granted());
  EXPECT_EQ(a.running(), 1u);
  EXPECT_EQ(a.queued(), 1u);
}

TEST(Admission, WaitCompletesWhenTheSlotIsPassedOnAndThrowsWhenWithdrawn) {
  net::io_context io;
  admission a(1, 2, io.get_executor());
  auto t1 = a.admit();
  auto t2 = a.admit();
  auto t3 = a.admit();
  bool t2_woke = false, t3_aborted = false;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        co_await a.wait(*t2);
        t2_woke = true;
      },
      net::detached);
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        try {
          co_await a.wait(*t3);
        } catch (const boost::system::system_error& e) {
          t3_aborted = e.code() == net::error::operation_aborted;
        }
      },
      net::detached);
  io.poll();
  EXPECT_FALSE(t2_woke);
  a.withdraw(*t3);
  a.release(*t1);
  io.run();
  EXPECT_TRUE(t2_woke);
  EXPECT_TRUE(t3_aborted);
  EXPECT_EQ(a.queued(), 0u);
}

// ---- the engine's admission -----------------------------------------------------------------

TEST_F(engine_test, NeverMoreThanMaxRunningAndStartsInFifoOrder) {
  config.max_running = 4;
  io_threads = 1;  // grant order is deterministic with one thread
  run([&]() -> awaitable<void> {
    const auto t0 = steady_clock::now();
    std::vector<job_id> ids;
    for (int i = 0; i < 8; ++i) ids.push_back((co_await eng().submit(sleep_spec(200ms))).job.id);

    co_await sleep_for(100ms);
    EXPECT_EQ(eng().running(), 4u);
    EXPECT_EQ(eng().queued(), 4u);
    auto queued = co_await eng().list(query(job_state::queued));
    require(queued.jobs.size() == 4, "4 queued jobs");
    for (int i = 0; i < 4; ++i) EXPECT_EQ(queued.jobs[i].id, ids[7 - i]);  // newest first

    for (auto& id : ids) {
      auto s = co_await eng().get(id, 5000ms);
      EXPECT_EQ(s.state, job_state::succeeded);
    }
    const double total = ms_since(t0);
    EXPECT_GE(total, 350.0);  // two waves of 200 ms
    EXPECT_LE(total, 700.0);
    EXPECT_EQ(observer.max_running(), 4);
    EXPECT_EQ(observer.started(), ids);  // FIFO
  });
}

TEST_F(engine_test, SecondWaveStartsOnlyWhenTheFirstEnds) {
  config.max_running = 2;
  run([&]() -> awaitable<void> {
    // Scaled: a and b must still run when c is submitted (hops are slower under TSan).
    auto a = (co_await eng().submit(sleep_spec(scaled(150ms)))).job;
    auto b = (co_await eng().submit(sleep_spec(scaled(150ms)))).job;
    auto c = (co_await eng().submit(sleep_spec(10ms))).job;
    EXPECT_EQ(a.state, job_state::running);
    EXPECT_EQ(b.state, job_state::running);
    EXPECT_EQ(c.state, job_state::queued);
    EXPECT_FALSE(c.started_at.has_value());
    auto c_done = co_await eng().get(c.id, 5000ms);
    auto a_done = co_await eng().get(a.id, 5000ms);
    auto b_done = co_await eng().get(b.id, 5000ms);
    EXPECT_EQ(c_done.state, job_state::succeeded);
    require(c_done.started_at && a_done.finished_at && b_done.finished_at, "timestamps set");
    // c started only once a slot was freed by a or b.
    EXPECT_GE(*c_done.started_at, std::min(*a_done.finished_at, *b_done.finished_at));
    EXPECT_LE(observer.max_running(), 2);
  });
}

TEST_F(engine_test, RefusesWithQueueFullBeyondRunningPlusQueued) {
  config.max_running = 2;
  config.max_queued = 2;
  run([&]() -> awaitable<void> {
    std::vector<job_id> ids;
    for (int i = 0; i < 4; ++i) ids.push_back((co_await eng().submit(sleep_spec(2000ms))).job.id);
    EXPECT_EQ(eng().running(), 2u);
    EXPECT_EQ(eng().queued(), 2u);

    EXPECT_EQ(co_await error_of(eng().submit(sleep_spec(10ms))), engine_errc::queue_full);
    EXPECT_EQ(observer.rejected("queue_full"), 1u);
    EXPECT_EQ((co_await eng().list(query())).jobs.size(), 4u);

    // Cancelling a queued job frees its queue place.
    co_await eng().cancel(ids[3]);
    EXPECT_EQ(eng().queued(), 1u);
    auto again = co_await eng().submit(sleep_spec(10ms));
    EXPECT_EQ(again.job.state, job_state::queued);
    EXPECT_EQ(co_await error_of(eng().submit(sleep_spec(10ms))), engine_errc::queue_full);
  });
}

TEST_F(engine_test, BatchThatDoesNotFitCreatesNothing) {
  config.max_running = 2;
  config.max_queued = 2;
  run([&]() -> awaitable<void> {
    std::vector<job_spec> specs;
    for (int i = 0; i < 5; ++i) specs.push_back(sleep_spec(10ms));
    EXPECT_EQ(co_await error_of(eng().submit_batch(specs)), engine_errc::queue_full);
    EXPECT_TRUE((co_await eng().list(query())).jobs.empty());
    EXPECT_EQ(eng().running(), 0u);
    EXPECT_EQ(eng().queued(), 0u);
    EXPECT_EQ(observer.rejected("queue_full"), 5u);

    // With one slot taken, a batch of 4 no longer fits either.
    auto first = co_await eng().submit(sleep_spec(1000ms));
    specs.pop_back();
    EXPECT_EQ(co_await error_of(eng().submit_batch(specs)), engine_errc::queue_full);
    auto page = co_await eng().list(query());
    require(page.jobs.size() == 1, "only the single job");
    EXPECT_EQ(page.jobs[0].id, first.job.id);
  });
}

TEST_F(engine_test, BatchThatFitsIsAdmittedInOrder) {
  config.max_running = 2;
  config.max_queued = 2;
  run([&]() -> awaitable<void> {
    std::vector<job_spec> specs;
    for (int i = 0; i < 4; ++i) specs.push_back(sleep_spec(30ms));
    auto subs = co_await eng().submit_batch(specs);
    require(subs.size() == 4, "4 submissions");
    for (std::size_t i = 0; i < subs.size(); ++i) {
      EXPECT_TRUE(subs[i].created);
      if (i > 0) {
        EXPECT_GT(subs[i].job.seq, subs[i - 1].job.seq);
      }
      EXPECT_EQ(subs[i].job.state, i < 2 ? job_state::running : job_state::queued) << i;
    }
    for (auto& s : subs)
      EXPECT_EQ((co_await eng().get(s.job.id, 5000ms)).state, job_state::succeeded);
    EXPECT_EQ(observer.started()[2], subs[2].job.id);
    EXPECT_EQ(observer.started()[3], subs[3].job.id);
  });
}

}  // namespace
}  // namespace gatherd::core
