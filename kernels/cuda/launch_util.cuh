// Launch geometry shared by the elementwise kernels: grid-stride loops over
// int64 indices with a capped grid.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"

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

}  // namespace streamq::cuda_detail
