// DevicePool's CUDA half: cudaMalloc/cudaFree behind the ledger, and the
// default limit from cudaMemGetInfo.
#include "kernels/cuda/device_pool.h"

#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_check.h"

namespace streamq {
namespace {

// nullptr when the device is full (the ledger words that error); any other
// failure is a broken context and throws with the CUDA error text.
void* device_malloc(uint64_t bytes) {
  void* ptr = nullptr;
  const cudaError_t err = cudaMalloc(&ptr, static_cast<size_t>(bytes));
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it so the next launch check is not blamed
    return nullptr;
  }
  CUDA_CHECK(err);
  return ptr;
}

// Cannot throw (called from destructors). A failure here means the context is
// already broken, and that sticky error resurfaces at the next checked call;
// a non-sticky one is cleared so it is not reported as some later launch's.
void device_free(void* ptr) {
  if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
}

}  // namespace

uint64_t DevicePool::default_limit(uint64_t margin) {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes > margin ? free_bytes - margin : 0;
}

DevicePool::DevicePool(uint64_t limit_bytes)
    : ledger_(limit_bytes, [](uint64_t bytes, const std::string&) { return device_malloc(bytes); }, device_free) {}

}  // namespace streamq
