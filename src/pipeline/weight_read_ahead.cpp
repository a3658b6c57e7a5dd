// The next block's weight read-ahead.
#include "src/pipeline/weight_read_ahead.h"

namespace streamq {

WeightReadAhead::WeightReadAhead(const Model& model, int64_t block, TraceRecorder* trace) {
  if (block < 0 || block >= model.config().layers) return;
  thread_ = std::thread([this, &model, block, trace] {
    try {
      const double start = trace ? trace->now_us() : 0.0;
      bytes_ = model.read_ahead_block(block);
      if (trace)
        trace->complete("read-ahead weights", trace_cat::kRead, start, trace->now_us() - start,
                        trace->lane("weight read-ahead"),
                        {{"block", block}, {"bytes", bytes_}});
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

WeightReadAhead::~WeightReadAhead() {
  if (thread_.joinable()) thread_.join();
}

uint64_t WeightReadAhead::join() {
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  return bytes_;
}

}  // namespace streamq
