// The task graph: dependencies respected on random DAGs, resource capacities
// never exceeded (observed inside the tasks, not only by the graph's own
// counters), holds spanning tasks, impossible graphs refused when declared,
// stuck graphs reported instead of hanging, errors propagated, real overlap,
// trace lanes.
#include <gtest/gtest.h>

#include <tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "scheduler/task_graph.h"
#include "scheduler/trace.h"
#include "src/core/error.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using TaskId = TaskGraph::TaskId;

// Atomic max, for the in-use counts the tasks observe themselves.
void note_max(std::atomic<int64_t>& max, int64_t v) {
  int64_t cur = max.load();
  while (v > cur && !max.compare_exchange_weak(cur, v)) {
  }
}

TEST(TaskGraph, RandomDagsRunEveryTaskAfterItsPredecessors) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 5; ++round) {
    TaskGraph g;
    const int n = 150;
    std::atomic<int> clock{0};
    std::vector<int> start(n, -1), end(n, -1);
    std::vector<std::vector<TaskId>> preds(n);
    for (int t = 0; t < n; ++t) {
      for (int p = 0; p < t; ++p) {
        if (rng() % 20 == 0) preds[t].push_back(p);
      }
      g.add({"t" + std::to_string(t), "compute", ""},
            [&, t] {
              start[t] = clock.fetch_add(1);
              std::this_thread::yield();
              end[t] = clock.fetch_add(1);
            },
            preds[t]);
    }
    tbb::task_arena arena(2);
    arena.execute([&] { g.run(); });
    ASSERT_EQ(g.finish_order().size(), static_cast<std::size_t>(n));
    for (int t = 0; t < n; ++t) {
      ASSERT_GE(start[t], 0) << "task " << t << " never ran";
      for (TaskId p : preds[t]) EXPECT_GT(start[t], end[p]) << "task " << t << " started before " << p << " ended";
    }
  }
}

TEST(TaskGraph, ResourceCapacityIsNeverExceeded) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TaskGraph g;
  const uint64_t capacity = 100;
  const auto pool = g.resource("pool", capacity);
  const auto lane = g.resource("copy engine", 1);
  std::atomic<int64_t> in_pool{0}, pool_max{0}, in_lane{0}, lane_max{0};
  for (int t = 0; t < 120; ++t) {
    const int64_t amount = 1 + static_cast<int64_t>(rng() % capacity);
    const bool on_lane = rng() % 3 == 0;
    std::vector<TaskGraph::Use> uses{{pool, static_cast<uint64_t>(amount)}};
    if (on_lane) uses.push_back({lane, 1});
    g.add({"t" + std::to_string(t), "compute", ""},
          [&, amount, on_lane] {
            note_max(pool_max, in_pool += amount);
            if (on_lane) note_max(lane_max, ++in_lane);
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            if (on_lane) --in_lane;
            in_pool -= amount;
          },
          {}, uses);
  }
  tbb::task_arena arena(4);
  arena.execute([&] { g.run({.max_parallel = 4}); });
  EXPECT_LE(pool_max.load(), static_cast<int64_t>(capacity));
  EXPECT_EQ(lane_max.load(), 1);
  const auto stats = g.resource_stats();
  EXPECT_LE(stats[0].high_water, capacity);
  EXPECT_GT(stats[0].high_water, 0u);
  EXPECT_EQ(stats[1].high_water, 1u);
}

// read -> upload -> forward per chunk, the device copy held from upload to
// forward: with room for two chunks at most two are ever resident.
TEST(TaskGraph, HoldsSpanTasksAndBoundResidentChunks) {
  TaskGraph g;
  const uint64_t chunk = 10;
  const auto device = g.resource("device pool", 2 * chunk);
  std::atomic<int64_t> resident{0}, resident_max{0};
  std::vector<int> forwarded;
  std::mutex mu;
  TaskId prev_forward = -1;
  for (int c = 0; c < 12; ++c) {
    const TaskId read = g.add({"read " + std::to_string(c), "read", "io"}, [] {});
    const TaskId up = g.add({"upload " + std::to_string(c), "h2d", "copy h2d"},
                            [&] { note_max(resident_max, ++resident); }, {read});
    std::vector<TaskId> after{up};
    if (prev_forward >= 0) after.push_back(prev_forward);  // forwards in chunk order, one stream
    const TaskId fwd = g.add({"forward " + std::to_string(c), "forward", "compute"},
                             [&, c] {
                               std::this_thread::sleep_for(std::chrono::microseconds(300));
                               --resident;
                               std::lock_guard<std::mutex> lock(mu);
                               forwarded.push_back(c);
                             },
                             after);
    g.hold(up, fwd, {device, chunk});
    prev_forward = fwd;
  }
  tbb::task_arena arena(3);
  arena.execute([&] { g.run(); });
  EXPECT_LE(resident_max.load(), 2);
  ASSERT_EQ(forwarded.size(), 12u);
  for (int c = 0; c < 12; ++c) EXPECT_EQ(forwarded[static_cast<std::size_t>(c)], c);
  EXPECT_EQ(g.resource_stats()[0].high_water, 2 * chunk);
}

TEST(TaskGraph, AUseLargerThanTheCapacityIsRefusedWhenDeclared) {
  TaskGraph g;
  const auto device = g.resource("device pool", 1000);
  try {
    g.add({"factor down_proj", "compute", ""}, [] {}, {}, {{device, 4096}});
    FAIL() << "no error";
  } catch (const BudgetError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("factor down_proj"), std::string::npos) << msg;
    EXPECT_NE(msg.find("device pool"), std::string::npos) << msg;
  }
  const TaskId a = g.add({"a", "compute", ""}, [] {});
  const TaskId b = g.add({"b", "compute", ""}, [] {});
  EXPECT_THROW(g.hold(a, b, {device, 1}), InternalError) << "b does not depend on a";
  EXPECT_THROW(g.add({"c", "compute", ""}, [] {}, {7}), InternalError) << "unknown predecessor";
  EXPECT_THROW(g.resource("empty", 0), InternalError);
}

TEST(TaskGraph, AStuckGraphFailsNamingTheTaskInsteadOfHanging) {
  TaskGraph g;
  const auto pool = g.resource("pinned staging", 10);
  const TaskId a = g.add({"read chunk 0", "read", ""}, [] {});
  const TaskId b = g.add({"read chunk 1", "read", ""}, [] {});
  const TaskId c = g.add({"forward both", "forward", ""}, [] {}, {a, b});
  g.hold(a, c, {pool, 6});
  g.hold(b, c, {pool, 6});
  try {
    g.run();
    FAIL() << "no error";
  } catch (const BudgetError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("read chunk 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("pinned staging"), std::string::npos) << msg;
  }
}

TEST(TaskGraph, TheFirstErrorStopsNewStartsAndIsRethrown) {
  TaskGraph g;
  std::atomic<bool> after_ran{false};
  const TaskId bad = g.add({"bad", "compute", ""}, [] { throw InputError("chunk 3 is corrupt"); });
  g.add({"after", "compute", ""}, [&] { after_ran = true; }, {bad});
  try {
    g.run();
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "chunk 3 is corrupt");
  }
  EXPECT_FALSE(after_ran.load());
  EXPECT_THROW(g.run(), InternalError) << "a graph runs once";
}

// Two independent tasks that each wait for the other can only finish when the
// graph really runs them at the same time.
TEST(TaskGraph, IndependentTasksOverlap) {
  TaskGraph g;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  bool both = true;
  auto meet = [&] {
    std::unique_lock<std::mutex> lock(mu);
    ++arrived;
    cv.notify_all();
    if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return arrived == 2; })) both = false;
  };
  g.add({"copy", "h2d", "copy h2d"}, meet);
  g.add({"compute", "compute", "stream 0"}, meet);
  TraceRecorder trace;
  tbb::task_arena arena(2);
  arena.execute([&] { g.run({.trace = &trace}); });
  EXPECT_TRUE(both);
  // One span per task, on its named lane.
  const auto j = trace.to_json();
  int spans = 0;
  for (const auto& e : j["traceEvents"]) {
    if (e.value("ph", "") == "X") ++spans;
  }
  EXPECT_EQ(spans, 2);
  EXPECT_NE(j.dump().find("copy h2d"), std::string::npos);
  EXPECT_NE(j.dump().find("stream 0"), std::string::npos);
}

}  // namespace
}  // namespace streamq
