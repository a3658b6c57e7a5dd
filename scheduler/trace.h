// Trace recorder: timed spans of the engine's tasks written as Chrome
// trace-event JSON (opens in Perfetto and chrome://tracing), one lane per
// worker thread plus named virtual lanes (I/O ring, CUDA stream).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "scheduler/trace_categories.h"

namespace streamq {

// Collects complete events ("ph":"X") with microsecond times from its own
// construction. Owned by the job and passed down as a pointer; a null pointer
// means tracing is off and every TraceSpan on it costs one branch. All methods
// are thread-safe: a span is recorded under one short mutex hold when it ends,
// which is cheap next to the tasks traced (reads, block forwards, sweeps).
//   std::unique_ptr<TraceRecorder> trace;            // job: --trace given?
//   if (!path.empty()) trace = std::make_unique<TraceRecorder>();
//   run_blocks(..., trace.get());                    // tasks: TraceSpan(trace, ...)
//   trace->set_other("peak_gflops", measured);       // optional
//   trace->write(path);  print format_summary(analyze_trace(trace->to_json()));
class TraceRecorder {
 public:
  // The constructing thread becomes lane "main".
  TraceRecorder();
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  // Microseconds since the recorder was created (steady clock).
  double now_us() const;

  // The calling thread's lane id; the first call from a thread creates its lane
  // ("worker N" in order of first appearance).
  int thread_lane();
  // Renames the calling thread's lane (e.g. "prefetch", "writer").
  void name_thread(const std::string& name);
  // A lane that is not a thread (an I/O ring, a CUDA stream): the same name
  // always gives the same id.
  int lane(const std::string& name);
  bool has_lane(int lane) const;

  // Records a complete event with explicit times, for work timed elsewhere
  // (an io_uring completion, CUDA events). lane < 0: the calling thread's lane.
  void complete(std::string_view name, std::string_view category, double start_us, double dur_us, int lane = -1,
                nlohmann::json args = nlohmann::json::object());

  // Stored in the trace's "otherData" object: run facts and the machine's
  // measured peaks that `streamq profile` compares against ("peak_gflops",
  // "peak_read_gbps", "peak_<category>_gbps").
  void set_other(const std::string& key, nlohmann::json value);

  std::size_t event_count() const;
  // {"traceEvents":[metadata..., events...], "displayTimeUnit":"ms", "otherData":{...}}
  nlohmann::json to_json() const;
  // Writes to_json() atomically (temp, fsync, rename, fsync dir).
  void write(const std::string& path) const;

 private:
  struct Event {
    std::string name, category;
    double ts_us = 0, dur_us = 0;
    int lane = 0;
    nlohmann::json args;
  };
  int thread_lane_locked();
  int new_lane_locked(std::string name, bool is_thread);

  const std::chrono::steady_clock::time_point t0_;
  const int pid_;
  mutable std::mutex mu_;
  std::vector<Event> events_;
  std::vector<std::string> lane_names_;  // index = lane id
  std::vector<bool> lane_is_thread_;
  std::unordered_map<std::thread::id, int> thread_lanes_;
  std::unordered_map<std::string, int> named_lanes_;
  int workers_ = 0;
  nlohmann::json other_ = nlohmann::json::object();
};

// Times its own scope as one span on `rec` (nothing when rec is null):
//   TraceSpan span(trace, "read chunk", trace_cat::kRead, ring_lane);
//   span.arg("bytes", n).arg("block", b);
// The span is recorded when it ends (end() or destruction). lane < 0 means the
// lane of the thread that constructed it.
class TraceSpan {
 public:
  TraceSpan(TraceRecorder* rec, std::string_view name, std::string_view category, int lane = -1);
  ~TraceSpan();
  TraceSpan(const TraceSpan&) = delete;
  TraceSpan& operator=(const TraceSpan&) = delete;

  template <class T>
  TraceSpan& arg(const std::string& key, T&& value) {
    if (rec_) args_[key] = std::forward<T>(value);
    return *this;
  }
  // Records the span now; later calls do nothing.
  void end();

 private:
  TraceRecorder* rec_;
  std::string name_, category_;
  int lane_ = -1;
  double start_us_ = 0;
  nlohmann::json args_;
};

}  // namespace streamq
