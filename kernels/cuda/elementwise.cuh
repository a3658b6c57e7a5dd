// Elementwise ops on the GPU. CPU twins: kernels/cpu/elementwise.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// out[i] = silu(gate[i]) * up[i]; out may alias gate or up. Asynchronous on
// `stream`. Same formula and operation order as the CPU; differs only by
// expf's rounding (CUDA's is within 2 ulp, glibc's within 1).
void cuda_swiglu(cudaStream_t stream, const float* gate /*[n]*/, const float* up /*[n]*/,
                 float* out /*[n]*/, int64_t n);

// dgate[i], dup[i] from dout[i] = dL/d(silu(gate[i]) * up[i]); an output
// may alias an input, not the other output. Asynchronous on `stream`. The
// CPU twin's float operations in its order: bit-identical but for expf's
// rounding (as cuda_swiglu).
void cuda_swiglu_backward(cudaStream_t stream, const float* gate /*[n]*/, const float* up /*[n]*/,
                          const float* dout /*[n]*/, float* dgate /*[n]*/, float* dup /*[n]*/, int64_t n);

// y[i] += x[i]. Asynchronous on `stream`; bit-identical to the CPU.
void cuda_add_inplace(cudaStream_t stream, float* y /*[n]*/, const float* x /*[n]*/, int64_t n);
// out = a - b; out may alias a or b.
void cuda_subtract(cudaStream_t stream, const float* a /*[n]*/, const float* b /*[n]*/, float* out /*[n]*/,
                   int64_t n);

// y[rows, cols] += bias[cols] broadcast over rows. Asynchronous on `stream`;
// bit-identical to the CPU.
void cuda_add_bias(cudaStream_t stream, float* y /*[rows, cols]*/, const float* bias /*[cols]*/,
                   int64_t rows, int64_t cols);

}  // namespace streamq
