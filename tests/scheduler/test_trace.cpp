// TraceRecorder: spans from several threads land on their own lanes with
// thread_name metadata, nesting is preserved, virtual lanes and args are
// written, the file is valid Chrome trace JSON, and a null recorder is free.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>
#include <vector>

#include "src/core/error.h"
#include "src/report/profile.h"
#include "scheduler/trace.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using nlohmann::json;

// tid -> lane name, from the "thread_name" metadata events.
std::map<int, std::string> lane_names(const json& trace) {
  std::map<int, std::string> names;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "thread_name") names[e["tid"].get<int>()] = e["args"]["name"];
  return names;
}

std::vector<json> spans(const json& trace) {
  std::vector<json> out;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X") out.push_back(e);
  return out;
}

TEST(Trace, ThreadsGetTheirOwnLanesAndNestingIsKept) {
  test::ScratchDir dir("trace");
  TraceRecorder rec;
  const int ring = rec.lane("io ring");
  EXPECT_EQ(rec.lane("io ring"), ring);  // same name, same lane
  { TraceSpan s(&rec, "setup", trace_cat::kCompute); }
  constexpr int kThreads = 3;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&rec, ring, t] {
      TraceSpan outer(&rec, "block " + std::to_string(t), trace_cat::kCompute);
      outer.arg("block", t).arg("flops", 1e9);
      {
        TraceSpan inner(&rec, "forward", trace_cat::kForward);
        inner.arg("linear", "q_proj");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      TraceSpan io(&rec, "read chunk", trace_cat::kRead, ring);
      io.arg("bytes", int64_t{4096});
    });
  for (auto& th : threads) th.join();
  rec.complete("h2d copy", trace_cat::kH2D, 10.0, 5.0, rec.lane("cuda stream 0"), {{"bytes", 1024}});
  rec.set_other("peak_gflops", 123.0);
  EXPECT_EQ(rec.event_count(), 1u + 3 * kThreads + 1);

  rec.write(dir.file("t.json"));
  const json trace = json::parse(test::read_all(dir.file("t.json")));
  EXPECT_EQ(trace["displayTimeUnit"], "ms");
  EXPECT_EQ(trace["otherData"]["peak_gflops"], 123.0);

  const auto names = lane_names(trace);
  std::set<std::string> name_set;
  for (const auto& [tid, n] : names) name_set.insert(n);
  EXPECT_EQ(name_set, (std::set<std::string>{"main", "worker 1", "worker 2", "worker 3", "io ring", "cuda stream 0"}));

  std::map<std::string, json> outer_by_tid;
  std::set<int> worker_tids;
  for (const auto& e : spans(trace)) {
    ASSERT_TRUE(e["ts"].is_number() && e["dur"].is_number() && e["pid"].is_number() && e["tid"].is_number()) << e;
    EXPECT_GE(e["dur"].get<double>(), 0);
    const std::string lane = names.at(e["tid"].get<int>());
    if (e["name"] == "setup") {
      EXPECT_EQ(lane, "main");
    }
    if (e["cat"] == "read") {
      EXPECT_EQ(lane, "io ring");
      EXPECT_EQ(e["args"]["bytes"], 4096);
    }
    if (e["cat"] == "h2d") {
      EXPECT_EQ(lane, "cuda stream 0");
      EXPECT_EQ(e["ts"], 10.0);
      EXPECT_EQ(e["dur"], 5.0);
    }
    if (e["cat"] == "compute" && e["name"] != "setup") {
      EXPECT_EQ(lane.rfind("worker ", 0), 0u) << lane;
      worker_tids.insert(e["tid"].get<int>());
      outer_by_tid[lane] = e;
    }
  }
  EXPECT_EQ(worker_tids.size(), static_cast<size_t>(kThreads));  // one lane per thread
  // Each forward span sits inside its thread's block span.
  for (const auto& e : spans(trace)) {
    if (e["cat"] != "forward") continue;
    EXPECT_EQ(e["args"]["linear"], "q_proj");
    const json& outer = outer_by_tid.at(names.at(e["tid"].get<int>()));
    EXPECT_GE(e["ts"].get<double>(), outer["ts"].get<double>());
    EXPECT_LE(e["ts"].get<double>() + e["dur"].get<double>(),
              outer["ts"].get<double>() + outer["dur"].get<double>() + 1e-3);
    EXPECT_GE(e["dur"].get<double>(), 2000.0);  // the 2 ms sleep
  }

  // The profiler reads the recorder's own output.
  const ParsedTrace parsed = parse_trace(trace);
  EXPECT_EQ(parsed.spans.size(), rec.event_count());
  EXPECT_EQ(parsed.lane_names.front(), "main");  // threads sort before virtual lanes
  EXPECT_EQ(parsed.lane_names.back(), "cuda stream 0");
}

TEST(Trace, NullRecorderDoesNothingAndBadLanesAreCaught) {
  {
    TraceSpan s(nullptr, "nothing", trace_cat::kRead);
    s.arg("bytes", 1).arg("name", "x");
    s.end();
  }
  TraceRecorder rec;
  EXPECT_THROW(TraceSpan(&rec, "bad", trace_cat::kRead, 99), InternalError);
  EXPECT_THROW(rec.complete("bad", trace_cat::kRead, 0, 1, 99), InternalError);
  EXPECT_EQ(rec.event_count(), 0u);
}

TEST(Trace, NamedThreadLaneAndEndIsIdempotent) {
  TraceRecorder rec;
  std::thread([&rec] {
    rec.name_thread("prefetch");
    TraceSpan s(&rec, "read", trace_cat::kRead);
    s.end();
    s.end();  // already recorded; the destructor must not add a third
  }).join();
  EXPECT_EQ(rec.event_count(), 1u);
  const auto names = lane_names(rec.to_json());
  const auto x = spans(rec.to_json());
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(names.at(x[0]["tid"].get<int>()), "prefetch");
}

}  // namespace
}  // namespace streamq
