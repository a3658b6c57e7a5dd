// Reads the next block's weights into the page cache on a background thread
// while the current block computes, so that loading them later does not wait
// for the disk (for a 70B model a block is about 1.7 GB of bf16).
#pragma once

#include <cstdint>
#include <exception>
#include <thread>

#include "src/model/model.h"
#include "scheduler/trace.h"

namespace streamq {

class WeightReadAhead {
 public:
  // Starts reading block `block` (nothing when it is out of range). The span
  // goes to the trace's "weight read-ahead" lane with the bytes requested.
  WeightReadAhead(const Model& model, int64_t block, TraceRecorder* trace);
  WeightReadAhead(const WeightReadAhead&) = delete;
  WeightReadAhead& operator=(const WeightReadAhead&) = delete;
  // Joins; an error of the read-ahead is dropped here (it is only a hint, and
  // the load that follows reports a bad file in its own terms).
  ~WeightReadAhead();
  // Waits for the read-ahead to be submitted and rethrows its error, if any.
  // Returns the bytes requested (0 when the file system refused).
  uint64_t join();

 private:
  std::thread thread_;
  uint64_t bytes_ = 0;
  std::exception_ptr error_;
};

}  // namespace streamq
