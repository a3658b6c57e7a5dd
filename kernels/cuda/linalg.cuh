// Cholesky-based factorizations on the GPU through cuSOLVER: the GPTQ
// inverse-Hessian factor. CPU twin: kernels/cpu/linalg.cpp, whose
// contracts (Backend in kernels/backend.h) these follow exactly, including
// throwing InternalError on a NaN in the input as LAPACKE does.
//
// Each call synchronizes the handle's stream once per factorization step:
// the result (positive definite or not) is a devInfo on the device.
#pragma once

#include <cusolverDn.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/device_pool.h"

namespace streamq {

// Scratch that cuSOLVER calls need, grown on demand (from the pool for the
// device part) and kept between calls, so a run of equal-sized Hessians
// allocates once.
class SolverWorkspace {
 public:
  explicit SolverWorkspace(DevicePool& pool);
  // At least `bytes` of device scratch; what the pool error names if it does
  // not fit. Growing synchronizes `stream` before the old block goes back.
  void* device(size_t bytes, cudaStream_t stream, const std::string& what);
  void* host(size_t bytes);
  // Two device ints: [0] cuSOLVER's devInfo, [1] the NaN-in-input flag.
  int* flags() const { return flags_.get(); }

 private:
  DevicePool& pool_;
  PoolBuffer<unsigned char> device_;
  std::vector<unsigned char> host_;
  PoolBuffer<int> flags_;
};

// See Backend::cholesky_lower / invert_lower_triangular / inverse_upper_factor.
// Row-major a[n,n] on the device.
bool cuda_cholesky_lower(cusolverDnHandle_t handle, SolverWorkspace& ws, double* a /*[n,n]*/,
                         int64_t n);
void cuda_invert_lower_triangular(cusolverDnHandle_t handle, SolverWorkspace& ws,
                                  double* l /*[n,n]*/, int64_t n);
bool cuda_inverse_upper_factor(cusolverDnHandle_t handle, SolverWorkspace& ws,
                               double* h /*[n,n]*/, int64_t n);
bool cuda_inverse_upper_factor(cusolverDnHandle_t handle, SolverWorkspace& ws,
                               float* h /*[n,n]*/, int64_t n);
// See Backend::svd: cusolverDnDgesvd (QR iteration; it takes column-major
// matrices with at least as many rows as columns), on the row-major a
// [m, n] read as column-major a^T when n >= m, else on a transposed copy.
void cuda_svd(cusolverDnHandle_t handle, SolverWorkspace& ws, double* a /*[m,n]*/, int64_t m, int64_t n,
              double* s /*[min]*/, double* u /*[m,min]*/, double* vt /*[min,n]*/);

}  // namespace streamq
