// Shared by the CPU elementwise and row-wise ops: size checks and the
// parallel loops over disjoint ranges. Each output element is computed by one
// task from its own inputs only, so results do not depend on the thread count.
#pragma once

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "src/core/error.h"

namespace streamq::cpu {

// Below this many elements per task the scheduling overhead outweighs the work.
inline constexpr int64_t kMinElementsPerTask = 16384;

inline void check_nonnegative(const char* op, int64_t a, int64_t b = 0) {
  if (a < 0 || b < 0) {
    throw InternalError(std::string(op) + ": negative size (" + std::to_string(a) + ", " +
                        std::to_string(b) + ")");
  }
}

// Runs body(begin, end) over [0, n) in chunks of at least kMinElementsPerTask.
template <typename Body>
void parallel_chunks(int64_t n, const Body& body) {
  if (n <= kMinElementsPerTask) {
    if (n > 0) body(int64_t{0}, n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, kMinElementsPerTask),
                    [&](const tbb::blocked_range<int64_t>& r) { body(r.begin(), r.end()); });
}

// Same over rows, with the grain chosen so a task still gets enough elements.
template <typename Body>
void parallel_rows(int64_t rows, int64_t cols, const Body& body) {
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, cols));
  if (rows <= grain) {
    if (rows > 0) body(int64_t{0}, rows);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, grain),
                    [&](const tbb::blocked_range<int64_t>& r) { body(r.begin(), r.end()); });
}

}  // namespace streamq::cpu
