// An ActivationStore decorator that records every get/put as a trace span
// (category read/write, with bytes, block, flow and chunk), and counts them as
// kill points (KillPoint::Put, Get) for the crash test.
#pragma once

#include <memory>
#include <string>

#include "io/store/activation_store.h"
#include "src/core/kill_point.h"
#include "scheduler/trace.h"

namespace streamq {

class TracedStore final : public ActivationStore {
 public:
  // `io_elsewhere`: the inner store does its I/O on its own thread and lane
  // (io/store/prefetch_store.h); these spans then only measure the wait.
  TracedStore(std::unique_ptr<ActivationStore> inner, TraceRecorder* trace, bool io_elsewhere = false)
      : inner_(std::move(inner)), trace_(trace), io_elsewhere_(io_elsewhere) {}
  void put(int64_t block, Flow flow, int64_t chunk, const float* data, int64_t numel) override {
    TraceSpan span(trace_, "store put", io_elsewhere_ ? trace_cat::kWait : trace_cat::kWrite);
    span.arg("bytes", numel * 4).arg("block", block).arg("flow", to_string(flow)).arg("chunk", chunk);
    inner_->put(block, flow, chunk, data, numel);
    kill_point(KillPoint::Put);
  }
  void get(int64_t block, Flow flow, int64_t chunk, std::vector<float>* out) override {
    TraceSpan span(trace_, "store get", io_elsewhere_ ? trace_cat::kWait : trace_cat::kRead);
    inner_->get(block, flow, chunk, out);
    span.arg("bytes", static_cast<int64_t>(out->size() * 4)).arg("block", block).arg("flow", to_string(flow)).arg("chunk", chunk);
    kill_point(KillPoint::Get);
  }
  void get_into(int64_t block, Flow flow, int64_t chunk, std::span<float> out) override {
    TraceSpan span(trace_, "store get", io_elsewhere_ ? trace_cat::kWait : trace_cat::kRead);
    inner_->get_into(block, flow, chunk, out);
    span.arg("bytes", static_cast<int64_t>(out.size() * 4)).arg("block", block).arg("flow", to_string(flow)).arg("chunk", chunk);
    kill_point(KillPoint::Get);
  }
  void drop(int64_t block) override { inner_->drop(block); }
  uint64_t bytes_held() const override { return inner_->bytes_held(); }
  void flush() override { inner_->flush(); }
  bool prefetch(int64_t block, Flow flow, int64_t chunk) override { return inner_->prefetch(block, flow, chunk); }
  void adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows) override {
    inner_->adopt(block, nchunks, flows);
  }
  StoreStats stats(int64_t block = -1) const override { return inner_->stats(block); }

 private:
  std::unique_ptr<ActivationStore> inner_;
  TraceRecorder* trace_;
  bool io_elsewhere_;
};

}  // namespace streamq
