// Trace spans for the work a CUDA stream runs, timed by the device itself:
// a pair of CUDA events is recorded around each op or copy as it is queued,
// and the pairs are turned into spans on a "device (cuda, ...)" trace lane
// when the host synchronizes (never earlier: reading an event's time waits
// for it). Event times are relative to an origin event recorded on the idle
// stream when tracing starts, anchored to the host clock read just before
// it, so device spans sit on the trace's clock early by microseconds at most
// (cudaEventElapsedTime's float milliseconds round to ~0.5 us per second
// since the origin).
//
//   StreamTrace timeline(stream, "device (cuda, one stream)");
//   timeline.start(trace);                 // stream idle (synchronized)
//   timeline.around("gemm", trace_cat::kCompute, 0, [&] { launch(); });
//   cudaStreamSynchronize(stream); timeline.drain();
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

namespace streamq {

class TraceRecorder;

class StreamTrace {
 public:
  StreamTrace(cudaStream_t stream, std::string lane_name);
  ~StreamTrace();
  StreamTrace(const StreamTrace&) = delete;
  StreamTrace& operator=(const StreamTrace&) = delete;

  // Starts recording into `trace` (null stops). The stream must be idle and
  // every earlier span drained (the caller synchronizes first).
  void start(TraceRecorder* trace);
  bool active() const { return trace_ != nullptr; }

  // Queues `enqueue` (which puts work on the stream) between two events.
  // Without an active trace it just calls `enqueue` (a template: every op of
  // the backend passes through here, so no std::function per call).
  template <typename Enqueue>
  void around(const char* name, const char* category, uint64_t bytes, Enqueue&& enqueue) {
    if (trace_ == nullptr) {
      enqueue();
      return;
    }
    const Pending p = begin(name, category, bytes);
    try {
      enqueue();
    } catch (...) {
      abandon(p);
      throw;
    }
    end(p);
  }

  // Turns every recorded pair into a span. Call after the stream was
  // synchronized (it would wait for the events otherwise).
  void drain();

  // Pairs recorded and not drained; a long run without a synchronize drains
  // itself at this many (waiting for the oldest work then).
  static constexpr std::size_t kMaxPending = 4096;
  std::size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    const char* name;
    const char* category;
    uint64_t bytes;
    cudaEvent_t start, end;
  };
  cudaEvent_t take_event();
  Pending begin(const char* name, const char* category, uint64_t bytes);  // start event recorded
  void end(const Pending& p);                                              // end event recorded, kept
  void abandon(const Pending& p);  // enqueue threw: both events back to the free list

  cudaStream_t stream_;
  std::string lane_name_;
  TraceRecorder* trace_ = nullptr;
  int lane_ = -1;
  cudaEvent_t origin_ = nullptr;
  double origin_us_ = 0;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> free_;  // drained events, reused
};

}  // namespace streamq
