// The CUDA Backend: every op of kernels/backend.h on device pointers
// (row-major, as the interface says), queued in call order on the backend's
// own stream, with the bf16 Hessian Gram product on top. Its buffers (cuBLAS
// and cuSOLVER workspaces) come from a DevicePool.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "kernels/backend.h"
#include "kernels/cuda/device_pool.h"

namespace streamq {

class CudaBackend : public Backend {
 public:
  // Ops are asynchronous on this stream, except the factorizations, which
  // return once their result (devInfo) is known. Pointers passed in must stay
  // valid until the work is done: synchronize() before reading results on the
  // host, reusing inputs from another stream, or freeing them.
  virtual cudaStream_t stream() const = 0;
  virtual void synchronize() = 0;

  // h[n,n] = beta * h + x^T x, x bf16 bits [tokens, n], fp32 accumulation
  // (see cuda_gram_bf16_accumulate in gemm.cuh).
  virtual void gram_bf16_accumulate(const uint16_t* x_bf16 /*[tokens, n]*/, int64_t n,
                                    int64_t tokens, float* h /*[n, n]*/, float beta) = 0;
};

// A backend on the current CUDA device; `pool` must outlive it. Throws
// BudgetError when the pool cannot hold the cuBLAS workspace.
std::unique_ptr<CudaBackend> make_cuda_backend(DevicePool& pool);

}  // namespace streamq
