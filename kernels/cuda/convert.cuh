// Element-type conversions on the GPU. CPU twin: streamq::f32_to_bf16 in
// src/core/dtype.cpp, which these match bit for bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// out[i] = bf16(in[i]): round to nearest even, NaN kept as a quiet NaN with
// its sign and top payload bits. Asynchronous on `stream`.
void cuda_f32_to_bf16(cudaStream_t stream, const float* in /*[n]*/, uint16_t* out /*[n]*/,
                      int64_t n);

}  // namespace streamq
