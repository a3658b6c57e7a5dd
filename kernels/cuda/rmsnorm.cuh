// RMSNorm on the GPU. CPU twin: rmsnorm in kernels/cpu/elementwise.cpp,
// whose arithmetic this repeats: the mean square summed in double, 1/rms
// rounded once to float, then (x * inv_rms) * w in float.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// y[rows, dim] = x / sqrt(mean(x^2) + eps) * w; y may alias x. Asynchronous
// on `stream`.
void cuda_rmsnorm(cudaStream_t stream, const float* x /*[rows, dim]*/, const float* w /*[dim]*/,
                  float* y /*[rows, dim]*/, int64_t rows, int64_t dim, float eps);

}  // namespace streamq
