// StreamTrace: CUDA events around a stream's work, drained into trace spans.
#include "kernels/cuda/stream_trace.h"

#include <utility>

#include "kernels/cuda/cuda_check.h"
#include "scheduler/trace.h"

namespace streamq {

StreamTrace::StreamTrace(cudaStream_t stream, std::string lane_name)
    : stream_(stream), lane_name_(std::move(lane_name)) {}

StreamTrace::~StreamTrace() {
  // Destroying a recorded event whose work is still queued is allowed (the
  // resources are released when it completes); errors cannot be thrown here.
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.end);
  }
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
  if (origin_ != nullptr) cudaEventDestroy(origin_);
}

cudaEvent_t StreamTrace::take_event() {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void StreamTrace::start(TraceRecorder* trace) {
  drain();
  trace_ = trace;
  if (trace_ == nullptr) return;
  lane_ = trace_->lane(lane_name_);
  if (origin_ == nullptr) CUDA_CHECK(cudaEventCreate(&origin_));
  // The host clock read just before the origin is recorded on the idle stream:
  // the origin completes at or after it, so every device span lands at or
  // before its true host time (early by the record's latency, microseconds,
  // never late: a span never ends after the synchronize that waited for it).
  const double before_us = trace_->now_us();
  CUDA_CHECK(cudaEventRecord(origin_, stream_));
  CUDA_CHECK(cudaEventSynchronize(origin_));
  origin_us_ = before_us;
}

StreamTrace::Pending StreamTrace::begin(const char* name, const char* category, uint64_t bytes) {
  if (pending_.size() >= kMaxPending) {
    CUDA_CHECK(cudaEventSynchronize(pending_.back().end));
    drain();
  }
  Pending p{name, category, bytes, take_event(), take_event()};
  CUDA_CHECK(cudaEventRecord(p.start, stream_));
  return p;
}

void StreamTrace::end(const Pending& p) {
  CUDA_CHECK(cudaEventRecord(p.end, stream_));
  pending_.push_back(p);
}

void StreamTrace::abandon(const Pending& p) {
  free_.push_back(p.start);  // recorded but never drained: reusable (a re-record replaces it)
  free_.push_back(p.end);
}

void StreamTrace::drain() {
  if (trace_ == nullptr) return;
  for (const Pending& p : pending_) {
    float start_ms = 0, dur_ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&start_ms, origin_, p.start));
    CUDA_CHECK(cudaEventElapsedTime(&dur_ms, p.start, p.end));
    nlohmann::json args = nlohmann::json::object();
    if (p.bytes > 0) args["bytes"] = p.bytes;
    trace_->complete(p.name, p.category, origin_us_ + 1e3 * start_ms, 1e3 * dur_ms, lane_, std::move(args));
    free_.push_back(p.start);
    free_.push_back(p.end);
  }
  pending_.clear();
}

}  // namespace streamq
