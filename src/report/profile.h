// Analysis of a Chrome trace (streamq's own --trace output or any trace with
// complete "X" or begin/end "B"/"E" events): per-category totals, how much I/O
// ran hidden under compute, per-lane busy time, achieved GB/s and GFLOP/s
// against peaks. Used by `streamq profile` and by the end-of-run report.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace streamq {

// Categories counted as I/O (read, write, decompress, compress) and as compute
// (compute, quantize, forward, stats). Others (h2d, anything a foreign trace
// has) get their own totals but take part in neither side of the overlap.
bool is_io_category(const std::string& category);
bool is_compute_category(const std::string& category);

struct TraceSpanRecord {
  int lane = 0;  // index into ParsedTrace::lane_names
  std::string name, category;
  double ts_us = 0, dur_us = 0;  // ts relative to the earliest span
  nlohmann::json args;           // object, possibly empty
};

struct ParsedTrace {
  std::vector<std::string> lane_names;  // in display order (sort index, then tid)
  std::vector<TraceSpanRecord> spans;   // sorted by ts
  nlohmann::json other = nlohmann::json::object();  // the trace's "otherData"
};

// Accepts {"traceEvents":[...], ...} or a bare event array. Throws InputError
// naming `source` and the event index for malformed events, and when the trace
// holds no span at all.
ParsedTrace parse_trace(const nlohmann::json& trace, const std::string& source = "trace");
// Reads and parses a trace file (InputError naming the path when unreadable).
nlohmann::json load_trace_file(const std::string& path);

struct CategoryStats {
  std::string category;
  int64_t count = 0;
  double total_us = 0;   // sum of span durations (parallel or nested spans add up)
  double active_us = 0;  // union of the category's spans over all lanes
  double hidden_us = 0;  // part of active_us overlapped by compute on another lane
  double bytes = 0, flops = 0;  // sums of the spans' "bytes" and "flops" args
  double gbps() const { return active_us > 0 ? bytes / active_us / 1e3 : 0; }
  double gflops() const { return active_us > 0 ? flops / active_us / 1e3 : 0; }
};

struct LaneStats {
  std::string name;
  int64_t spans = 0;
  double busy_us = 0;  // union of the lane's spans (nesting counted once)
};

// An achieved rate next to the peak the trace's otherData gave for it.
struct PeakRatio {
  std::string what;  // e.g. "read GB/s", "compute GFLOP/s"
  double achieved = 0, peak = 0;
};

// What the summary means:
// - wall: earliest span start to latest span end.
// - I/O hidden under compute: the time an I/O span is running while a compute
//   span runs on a *different* lane, over the union of all I/O time. A compute
//   span enclosing synchronous I/O on its own thread hides nothing: that
//   thread was doing the I/O, not computing.
// - critical path: the trace carries no dependencies, so the busiest lane
//   stands in for it: its busy time is a lower bound on the wall time of the
//   work as it was placed, and wall - busiest is time even that lane waited.
// - GB/s and GFLOP/s: bytes (flops) over the category's active time, so spans
//   in parallel count as aggregate throughput. Put bytes/flops on leaf spans
//   only, or nested spans count them twice.
// - peaks from otherData: "peak_gflops" (compute), "peak_io_gbps" (all I/O),
//   "peak_<category>_gbps" (e.g. peak_read_gbps).
struct ProfileSummary {
  int64_t spans = 0;
  double wall_us = 0;
  double idle_us = 0;  // no span on any lane
  std::vector<CategoryStats> categories;  // by total_us, largest first
  double io_us = 0, io_hidden_us = 0;     // union of I/O spans; part hidden under compute
  double io_hidden_fraction = -1;         // io_hidden_us / io_us; -1 when there is no I/O
  double io_bytes = 0;
  double compute_us = 0, compute_flops = 0;  // union of compute spans; their flops
  std::vector<LaneStats> lanes;              // in ParsedTrace lane order
  // The device's lanes (names starting with "device"): the union of their
  // spans, and the part of the wall time the device ran nothing (waiting
  // for data, or the host's stages); -1 when the trace has no device lane.
  double device_busy_us = -1, device_idle_fraction = -1;
  // The device's host<->device copies (h2d, d2h spans on its lanes) and the
  // part of them that ran while the device computed (on another of its
  // streams): what double buffering hides. -1 without device lanes.
  double device_copy_us = -1, device_copy_hidden_us = -1;
  int busiest_lane = -1;
  std::vector<PeakRatio> peaks;
  double io_gbps() const { return io_us > 0 ? io_bytes / io_us / 1e3 : 0; }
  double compute_gflops() const { return compute_us > 0 ? compute_flops / compute_us / 1e3 : 0; }
};

ProfileSummary summarize_trace(const ParsedTrace& trace);
ProfileSummary analyze_trace(const nlohmann::json& trace, const std::string& source = "trace");
// A few lines of text: totals table, overlap, lanes, critical lane, peaks.
std::string format_summary(const ProfileSummary& s);
// The same numbers as JSON (seconds, bytes, flops), for reports.
nlohmann::json summary_to_json(const ProfileSummary& s);

}  // namespace streamq
