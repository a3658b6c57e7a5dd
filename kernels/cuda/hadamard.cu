// GPU Hadamard transform of rows (see hadamard.cuh): one block per (row,
// segment) for the signs and the Walsh-Hadamard butterfly in shared memory,
// then one thread per (row, column of the segments) for the dense H_m mix,
// the scale and the inverse's signs. Explicitly rounded float operations
// (_rn), so nothing is contracted and the CPU twin's bits come out.
#include "kernels/cuda/hadamard.cuh"

#include <string>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

constexpr int kSegmentThreads = 256;

__global__ void hadamard_segments_kernel(float* x, int64_t n, int64_t p, int64_t m, const float* signs) {
  STREAMQ_DYNAMIC_SHARED(float, seg);
  const int64_t row = blockIdx.x / m, a = blockIdx.x % m;
  float* base = x + row * n + a * p;
  for (int64_t i = threadIdx.x; i < p; i += blockDim.x)
    seg[i] = signs ? __fmul_rn(base[i], signs[a * p + i]) : base[i];
  __syncthreads();
  for (int64_t len = 1; len < p; len <<= 1) {
    for (int64_t t = threadIdx.x; t < p / 2; t += blockDim.x) {
      const int64_t j = (t / len) * 2 * len + t % len;  // the t-th pair (j, j + len) of this level
      const float u = seg[j], v = seg[j + len];
      seg[j] = __fadd_rn(u, v);
      seg[j + len] = __fsub_rn(u, v);
    }
    __syncthreads();
  }
  for (int64_t i = threadIdx.x; i < p; i += blockDim.x) base[i] = seg[i];
}

__global__ void hadamard_mix_kernel(float* x, int64_t rows, int64_t n, int64_t p, const float* hm, int64_t m,
                                    const float* signs, bool inverse, float scale) {
  const int64_t total = rows * p;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t row = idx / p, b = idx % p;
    float* base = x + row * n + b;
    float in[kCudaHadamardMaxM];
    for (int64_t a2 = 0; a2 < m; ++a2) in[a2] = base[a2 * p];
    for (int64_t a = 0; a < m; ++a) {
      float acc = in[0];
      if (m > 1) {  // sum_a' H_m[a][a'] x[a'] from 0, a' ascending (inverse: H_m[a'][a])
        acc = 0.0f;
        for (int64_t a2 = 0; a2 < m; ++a2) {
          const float h = inverse ? hm[a2 * m + a] : hm[a * m + a2];
          acc = h > 0 ? __fadd_rn(acc, in[a2]) : __fsub_rn(acc, in[a2]);
        }
      }
      float y = __fmul_rn(acc, scale);
      if (inverse && signs) y = __fmul_rn(y, signs[a * p + b]);
      base[a * p] = y;
    }
  }
}

}  // namespace

void cuda_hadamard_rows(cudaStream_t stream, float* x, int64_t rows, int64_t n, const float* hm, int64_t m,
                        const float* signs, bool inverse) {
  cpu::check_hadamard_args(rows, n, m);
  const int64_t p = n / m;
  const std::string shape = "hadamard_rows(rows=" + std::to_string(rows) + ", n=" + std::to_string(n) +
                            ", m=" + std::to_string(m) + ")";
  if (p > kCudaHadamardMaxSegment || m > kCudaHadamardMaxM)
    throw InternalError(shape + ": the CUDA kernels take segments n / m up to " +
                        std::to_string(kCudaHadamardMaxSegment) + " and m up to " +
                        std::to_string(kCudaHadamardMaxM));
  if (rows == 0) return;
  if (rows * m > INT32_MAX) throw InternalError(shape + ": more than 2^31 - 1 segments in one launch");
  // Signs go in before the butterfly (forward) or after the mix (inverse).
  STREAMQ_LAUNCH(hadamard_segments_kernel, static_cast<unsigned>(rows * m), kSegmentThreads,
                 static_cast<size_t>(p) * sizeof(float), stream)(x, n, p, m, inverse ? nullptr : signs);
  CUDA_CHECK_LAUNCH("hadamard_segments_kernel in " + shape);
  STREAMQ_LAUNCH(hadamard_mix_kernel, cuda_detail::elementwise_blocks(rows * p), cuda_detail::kElementwiseBlock, 0,
                 stream)(x, rows, n, p, hm, m, signs, inverse, cpu::hadamard_scale(n));
  CUDA_CHECK_LAUNCH("hadamard_mix_kernel in " + shape);
}

}  // namespace streamq
