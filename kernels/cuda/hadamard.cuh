// The normalized Hadamard transform of rows on the GPU (Backend::hadamard_rows).
// CPU twin: kernels/cpu/hadamard.cpp, whose float operations it repeats in
// the same order, so the two agree bit for bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// The largest power-of-two segment (n / m) one block holds in shared memory
// (32 KiB of float, under every GPU's default 48 KiB), and the largest dense
// factor m a thread mixes: real models need segments up to 8192 (a 2^k
// hidden size) and m up to 172.
inline constexpr int64_t kCudaHadamardMaxSegment = 8192;
inline constexpr int64_t kCudaHadamardMaxM = 256;

// In place on x[rows, n]; hm [m, m] (+-1 as float) and signs [n] (or null)
// in device memory. Asynchronous on `stream`. InternalError for shapes the
// kernels do not take (segment or m above the limits) or bad arguments.
void cuda_hadamard_rows(cudaStream_t stream, float* x, int64_t rows, int64_t n, const float* hm, int64_t m,
                        const float* signs, bool inverse);

}  // namespace streamq
