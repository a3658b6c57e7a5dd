// Launch geometry shared by the elementwise kernels: grid-stride loops over
// int64 indices with a capped grid.
#pragma once

#include <cstdint>
#include <string>

#include "src/core/error.h"

namespace streamq::cuda_detail {

constexpr int kElementwiseBlock = 256;
// Enough blocks to fill any current GPU many times over; the grid-stride loop
// covers the rest.
constexpr int64_t kMaxElementwiseBlocks = 1 << 16;

inline unsigned elementwise_blocks(int64_t n) {
  const int64_t blocks = (n + kElementwiseBlock - 1) / kElementwiseBlock;
  return static_cast<unsigned>(blocks < kMaxElementwiseBlocks ? blocks : kMaxElementwiseBlocks);
}

inline void check_count(const char* op, int64_t n) {
  if (n < 0) throw InternalError(std::string(op) + ": negative element count " + std::to_string(n));
}

// cuBLAS/cuSOLVER's classic entry points take 32-bit sizes: throws
// InternalError naming `op` and `what` when v is negative or does not fit.
inline int checked_int(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > INT32_MAX) {
    throw InternalError(std::string(op) + ": " + what + " = " + std::to_string(v) +
                        " is negative or exceeds the 32-bit cuBLAS/cuSOLVER index range");
  }
  return static_cast<int>(v);
}

}  // namespace streamq::cuda_detail
