// The CUDA Backend: every op of kernels/backend.h on device pointers
// (row-major, as the interface says), queued in call order on the backend's
// own stream. Its buffers (Backend::alloc, the cuBLAS and cuSOLVER
// workspaces) come from a DevicePool; the float64 GPTQ sweep is the one op it
// does not support.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "kernels/backend.h"
#include "kernels/cuda/device_pool.h"

namespace streamq {

class CudaBackend : public Backend {
 public:
  // Ops and copies are asynchronous on this stream, except the
  // factorizations, which return once their result (devInfo) is known, and
  // the GPTQ sweep, which returns when done. Pointers passed in must stay
  // valid until the work is done: synchronize() before reading results on the
  // host, reusing inputs from another stream, or freeing them.
  virtual cudaStream_t stream() const = 0;
};

// A backend on the current CUDA device; `pool` must outlive it. Throws
// BudgetError when the pool cannot hold the cuBLAS workspace.
std::unique_ptr<CudaBackend> make_cuda_backend(DevicePool& pool);

}  // namespace streamq
