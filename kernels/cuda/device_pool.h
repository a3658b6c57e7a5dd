// The budgeted device memory pool: every device buffer the CUDA backend holds
// comes from here (cudaMalloc, never managed memory), under a byte limit that
// a --gpu-mem-limit flag sets, with a high-water mark for the run report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/memory_ledger.h"

namespace streamq {

class DevicePool {
 public:
  // Left free by the default limit: the CUDA context, the libraries' module
  // images and the driver's allocation rounding live outside the pool.
  static constexpr uint64_t kDefaultMarginBytes = uint64_t{1} << 30;

  // Free memory of the current device now, minus `margin` (0 when less is
  // free). Throws InternalError when no device answers.
  static uint64_t default_limit(uint64_t margin = kDefaultMarginBytes);

  explicit DevicePool(uint64_t limit_bytes);
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  // count elements of T on the current device, for `what` (named in the
  // BudgetError when it does not fit). Contents are uninitialized.
  template <typename T>
  PoolBuffer<T> allocate(size_t count, const std::string& what) {
    return PoolBuffer<T>(ledger_, count, what);
  }

  uint64_t limit() const { return ledger_.limit(); }
  uint64_t in_use() const { return ledger_.in_use(); }
  uint64_t high_water() const { return ledger_.high_water(); }
  // The ledger itself: what Backend::memory() hands out.
  MemoryLedger& ledger() { return ledger_; }

 private:
  MemoryLedger ledger_;
};

}  // namespace streamq
