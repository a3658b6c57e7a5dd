// Trace analysis on hand-built traces with known answers: category totals,
// I/O hidden under compute (interval union/intersection, other lanes only),
// lane busy time, rates against peaks, parsing of foreign traces and errors,
// and the `streamq profile` CLI with its HTML page.
#include <gtest/gtest.h>

#include "src/core/error.h"
#include "src/report/profile.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using nlohmann::json;

json x_event(int tid, const std::string& cat, double ts_ms, double end_ms, json args = json::object()) {
  json e = {{"ph", "X"}, {"name", cat + " span"}, {"cat", cat}, {"pid", 1}, {"tid", tid},
            {"ts", ts_ms * 1000}, {"dur", (end_ms - ts_ms) * 1000}};
  if (!args.empty()) e["args"] = args;
  return e;
}

json lane_name(int tid, const std::string& name) {
  return {{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", tid}, {"args", {{"name", name}}}};
}

const CategoryStats& category(const ProfileSummary& s, const std::string& c) {
  for (const auto& x : s.categories)
    if (x.category == c) return x;
  throw std::runtime_error("no category " + c);
}

// read 0-10 ms on the I/O lane, compute 5-20 ms on a worker: half the read is hidden.
json half_hidden_trace() {
  return {{"traceEvents",
           {lane_name(1, "worker 1"), lane_name(2, "io ring"),
            x_event(2, "read", 0, 10, {{"bytes", 1e9}}), x_event(1, "compute", 5, 20, {{"flops", 3e12}})}},
          {"otherData", {{"peak_gflops", 400000.0}, {"peak_read_gbps", 200.0}}}};
}

TEST(Profile, ReadHalfUnderComputeIsFiftyPercentHidden) {
  const ProfileSummary s = analyze_trace(half_hidden_trace());
  EXPECT_EQ(s.spans, 2);
  EXPECT_EQ(s.wall_us, 20000.0);
  EXPECT_EQ(s.idle_us, 0.0);
  EXPECT_EQ(s.io_us, 10000.0);
  EXPECT_EQ(s.io_hidden_us, 5000.0);
  EXPECT_EQ(s.io_hidden_fraction, 0.5);
  EXPECT_EQ(s.compute_us, 15000.0);
  const CategoryStats& read = category(s, "read");
  EXPECT_EQ(read.count, 1);
  EXPECT_EQ(read.total_us, 10000.0);
  EXPECT_EQ(read.hidden_us, 5000.0);
  EXPECT_DOUBLE_EQ(read.gbps(), 100.0);  // 1 GB in 10 ms
  const CategoryStats& compute = category(s, "compute");
  EXPECT_EQ(compute.total_us, 15000.0);
  EXPECT_DOUBLE_EQ(compute.gflops(), 200000.0);  // 3 TFLOP in 15 ms
  EXPECT_EQ(s.categories.front().category, "compute");  // largest total first
  ASSERT_EQ(s.lanes.size(), 2u);
  EXPECT_EQ(s.lanes[s.busiest_lane].name, "worker 1");
  EXPECT_EQ(s.lanes[s.busiest_lane].busy_us, 15000.0);
  ASSERT_EQ(s.peaks.size(), 2u);
  for (const auto& p : s.peaks) EXPECT_DOUBLE_EQ(p.achieved / p.peak, 0.5) << p.what;

  const std::string text = format_summary(s);
  EXPECT_NE(text.find("hidden under compute 0.005000 s (50.0%)"), std::string::npos) << text;
  EXPECT_NE(text.find("critical path (busiest lane"), std::string::npos) << text;
  EXPECT_NE(text.find("peak compute GFLOP/s: achieved 200000.00 of 400000.00 (50.0%)"), std::string::npos) << text;
  EXPECT_EQ(summary_to_json(s)["io_hidden_fraction"], 0.5);
}

TEST(Profile, UnionsIntersectionsAndSameLaneNesting) {
  // Lane 1: compute 0-20 enclosing its own synchronous read 5-10 (not hidden).
  // Lanes 2, 3: reads 30-34 and 32-38 in parallel (union 8 ms).
  // Lane 4: compute 33-36 and nested stats 34-35; decompress 36-40 on lane 2.
  // Hidden I/O: 33-36 of the reads (3 ms) + nothing of decompress (36-40 after compute).
  const json trace = {{"traceEvents",
                       {x_event(1, "compute", 0, 20), x_event(1, "read", 5, 10, {{"bytes", 100}}),
                        x_event(2, "read", 30, 34, {{"bytes", 200}}), x_event(3, "read", 32, 38),
                        x_event(4, "compute", 33, 36), x_event(4, "stats", 34, 35),
                        x_event(2, "decompress", 36, 40), x_event(5, "h2d", 35, 45)}}};
  const ProfileSummary s = analyze_trace(trace);
  EXPECT_EQ(s.wall_us, 45000.0);
  EXPECT_EQ(s.idle_us, 10000.0);  // 20-30
  const CategoryStats& read = category(s, "read");
  EXPECT_EQ(read.count, 3);
  EXPECT_EQ(read.total_us, 15000.0);   // 5 + 4 + 6
  EXPECT_EQ(read.active_us, 13000.0);  // 5 + union(30-34, 32-38)
  EXPECT_EQ(read.hidden_us, 3000.0);
  EXPECT_EQ(read.bytes, 300.0);
  EXPECT_EQ(s.io_us, 15000.0);  // 5-10, 30-40
  EXPECT_EQ(s.io_hidden_us, 3000.0);
  EXPECT_DOUBLE_EQ(s.io_hidden_fraction, 0.2);
  EXPECT_EQ(s.compute_us, 23000.0);
  EXPECT_EQ(category(s, "h2d").hidden_us, 1000.0);  // 35-36 under lane 4's compute
  EXPECT_EQ(s.lanes.size(), 5u);
  EXPECT_EQ(s.lanes[0].name, "tid 1");  // unnamed lanes are called by their tid
  EXPECT_EQ(s.lanes[0].busy_us, 20000.0);
  EXPECT_EQ(s.lanes[3].busy_us, 3000.0);  // nesting counted once
  EXPECT_EQ(s.busiest_lane, 0);
}

TEST(Profile, BeginEndEventsBareArraysAndSortIndex) {
  const json trace = json::array({
      {{"ph", "M"}, {"name", "thread_sort_index"}, {"pid", 1}, {"tid", 9}, {"args", {{"sort_index", 0}}}},
      lane_name(9, "first"),
      {{"ph", "B"}, {"name", "outer"}, {"cat", "compute"}, {"pid", 1}, {"tid", 3}, {"ts", 100}},
      {{"ph", "B"}, {"name", "inner"}, {"cat", "read"}, {"pid", 1}, {"tid", 3}, {"ts", 110}},
      {{"ph", "E"}, {"pid", 1}, {"tid", 3}, {"ts", 120}, {"args", {{"bytes", 10}}}},
      {{"ph", "E"}, {"pid", 1}, {"tid", 3}, {"ts", 200}},
      {{"ph", "i"}, {"name", "instant"}, {"pid", 1}, {"tid", 3}, {"ts", 150}},
      {{"ph", "X"}, {"name", "w"}, {"cat", "write"}, {"pid", 1}, {"tid", 9}, {"ts", 150}, {"dur", 100}},
  });
  const ParsedTrace p = parse_trace(trace);
  ASSERT_EQ(p.lane_names, (std::vector<std::string>{"first", "tid 3"}));
  ASSERT_EQ(p.spans.size(), 3u);
  EXPECT_EQ(p.spans[0].name, "outer");
  EXPECT_EQ(p.spans[0].ts_us, 0.0);  // relative to the earliest span
  EXPECT_EQ(p.spans[0].dur_us, 100.0);
  EXPECT_EQ(p.spans[1].args["bytes"], 10);
  const ProfileSummary s = summarize_trace(p);
  EXPECT_EQ(s.wall_us, 150.0);
  EXPECT_EQ(category(s, "write").hidden_us, 50.0);  // 150-200 under "outer" on another lane
  EXPECT_EQ(category(s, "read").hidden_us, 0.0);    // inside its own thread's compute
}

TEST(Profile, MalformedTracesNameTheEvent) {
  auto expect_input_error = [](const json& t, const std::string& needle) {
    try {
      analyze_trace(t, "t.json");
      ADD_FAILURE() << "no error for " << t.dump();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_input_error(json::object(), "not a Chrome trace");
  expect_input_error({{"traceEvents", json::array({lane_name(1, "a")})}}, "no spans");
  json bad_ts = x_event(1, "read", 0, 1);
  bad_ts["ts"] = "soon";
  expect_input_error({{"traceEvents", {lane_name(1, "a"), bad_ts}}}, "t.json: event 1 ('read span'): 'ts'");
  expect_input_error({{"traceEvents", {x_event(1, "read", 0, 1, {{"bytes", "many"}})}}}, "args.bytes");
  expect_input_error({{"traceEvents", {x_event(1, "read", 2, 1)}}}, "negative 'dur'");
  expect_input_error(json::array({{{"ph", "E"}, {"ts", 1}}}), "no open 'B'");
  json neg_peak = half_hidden_trace();
  neg_peak["otherData"]["peak_gflops"] = -1;
  expect_input_error(neg_peak, "peak_gflops");
}

TEST(Profile, CliPrintsSummaryAndWritesSelfContainedHtml) {
  test::ScratchDir dir("profile");
  test::write_all(dir.file("t.json"), half_hidden_trace().dump());
  const test::CliResult r = test::run_streamq({"profile", dir.file("t.json"), "--html", dir.file("t.html")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("(50.0%)"), std::string::npos) << r.out;
  const std::string html = test::read_all(dir.file("t.html"));
  EXPECT_EQ(html.rfind("<!doctype html>", 0), 0u);
  for (const char* needle : {"worker 1", "io ring", "<canvas", "trace-data", "50.0%"})
    EXPECT_NE(html.find(needle), std::string::npos) << needle;
  for (const char* network : {"http://", "https://", "<script src", "<link"})
    EXPECT_EQ(html.find(network), std::string::npos) << network;

  const test::CliResult j = test::run_streamq({"profile", "--json", dir.file("t.json")});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  EXPECT_EQ(json::parse(j.out)["io_hidden_fraction"], 0.5);

  test::write_all(dir.file("bad.json"), "{not json");
  const test::CliResult bad = test::run_streamq({"profile", dir.file("bad.json")});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("bad.json: not valid JSON"), std::string::npos) << bad.err;
  EXPECT_EQ(test::run_streamq({"profile"}).exit_code, 2);
}

}  // namespace
}  // namespace streamq
