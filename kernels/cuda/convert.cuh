// Element-type conversions on the GPU. CPU twins: streamq::f32_to_bf16 in
// src/core/dtype.cpp and cpu::bf16_to_f32 in kernels/cpu/convert.cpp, which
// these match bit for bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// out[i] = bf16(in[i]): round to nearest even, NaN kept as a quiet NaN with
// its sign and top payload bits. Asynchronous on `stream`.
void cuda_f32_to_bf16(cudaStream_t stream, const float* in /*[n]*/, uint16_t* out /*[n]*/,
                      int64_t n);

// out[i] = float(in[i]) (Backend::bf16_to_f32): exact, a 16-bit shift, NaN
// payloads kept. Asynchronous on `stream`; n == 0 launches nothing.
void cuda_bf16_to_f32(cudaStream_t stream, const uint16_t* in /*[n]*/, float* out /*[n]*/, int64_t n);

}  // namespace streamq
