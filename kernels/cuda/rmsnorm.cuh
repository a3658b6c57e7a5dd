// RMSNorm and its backward on the GPU. CPU twin: kernels/cpu/rmsnorm.cpp,
// whose arithmetic this repeats: the mean square summed in double, 1/rms
// rounded once to float, then (x * inv_rms) * w in float; the backward all
// in double, rounded once to float.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// y[rows, dim] = x / sqrt(mean(x^2) + eps) * w; y may alias x. Asynchronous
// on `stream`.
void cuda_rmsnorm(cudaStream_t stream, const float* x /*[rows, dim]*/, const float* w /*[dim]*/,
                  float* y /*[rows, dim]*/, int64_t rows, int64_t dim, float eps);

// dx = dL/dx of y = rmsnorm(x, w) given dy = dL/dy (w frozen); dx may alias
// dy. Asynchronous on `stream`. Differs from the CPU twin only where the
// double row sums' other order moves dx across a float rounding boundary
// (about 2^-29 of elements; none measured).
void cuda_rmsnorm_backward(cudaStream_t stream, const float* x /*[rows, dim]*/, const float* w /*[dim]*/,
                           const float* dy /*[rows, dim]*/, float* dx /*[rows, dim]*/, int64_t rows,
                           int64_t dim, float eps);

}  // namespace streamq
