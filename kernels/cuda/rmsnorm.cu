// RMSNorm and its backward (see rmsnorm.cuh): one block per row, a
// double-precision block reduction (of the squares; for the backward also of
// dy w x), then the elementwise write.
#include "kernels/cuda/rmsnorm.cuh"

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

constexpr int kRmsnormBlock = 256;
constexpr int kWarpsPerBlock = kRmsnormBlock / 32;
// Rows beyond this many blocks are covered by the grid-stride loop.
constexpr int64_t kMaxRmsnormBlocks = 1 << 16;

// No __restrict__: y may alias x. Safe because a row's sum is complete (and
// the block synchronized) before any thread writes that row, and each element
// is then read and written by the same thread.
__global__ void __launch_bounds__(kRmsnormBlock)
    rmsnorm_kernel(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
                   float eps) {
  STREAMQ_SHARED(double[kWarpsPerBlock], warp_sums);
  STREAMQ_SHARED(float, inv_rms_shared);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // Double, as on the CPU: the sum then does not depend on dim or on the
    // summation order beyond double rounding.
    double sum_sq = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const double v = xr[i];
      sum_sq += v * v;
    }
    for (int offset = 16; offset > 0; offset /= 2)
      sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, offset);
    if (lane == 0) warp_sums[warp] = sum_sq;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      for (int i = 0; i < kWarpsPerBlock; ++i) total += warp_sums[i];
      // Same expression as the CPU: eps is added in double, one rounding to float.
      inv_rms_shared = static_cast<float>(1.0 / sqrt(total / static_cast<double>(dim) + eps));
    }
    __syncthreads();
    const float inv_rms = inv_rms_shared;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      // HF order: normalize in float, then multiply by the weight (two
      // roundings, never fused).
      yr[i] = __fmul_rn(__fmul_rn(xr[i], inv_rms), w[i]);
    }
    // warp_sums and inv_rms_shared are reused by the next row.
    __syncthreads();
  }
}

// y_i = x_i r w_i with r = (mean(x^2) + eps)^-1/2, so
// dx_j = r w_j dy_j - x_j r^3 / dim * sum_i dy_i w_i x_i: the CPU twin's
// double arithmetic in its order, each operation rounded (_rn: no DFMA), one
// rounding to float at the end. The two row sums run in a fixed order
// (thread-strided, then a shuffle tree, then the warps in order), not the
// CPU's sequential one. No __restrict__: dx may alias dy (both sums are
// complete and the block synchronized before any write, and each element is
// then read and written by the same thread).
__global__ void __launch_bounds__(kRmsnormBlock)
    rmsnorm_backward_kernel(const float* x, const float* w, const float* dy, float* dx, int64_t rows,
                            int64_t dim, float eps) {
  STREAMQ_SHARED(double[2][kWarpsPerBlock], warp_sums);
  STREAMQ_SHARED(double[2], row_coefs);  // inv_rms, inv_rms^3 dot / dim
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float* dxr = dx + r * dim;
    double sum_sq = 0.0, dot = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const double xv = xr[i];
      sum_sq = __dadd_rn(sum_sq, __dmul_rn(xv, xv));
      // (dy w) x as the CPU: dy * w is exact in double, then one rounding.
      dot = __dadd_rn(dot, __dmul_rn(__dmul_rn(static_cast<double>(dyr[i]), static_cast<double>(w[i])), xv));
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      sum_sq = __dadd_rn(sum_sq, __shfl_xor_sync(0xffffffffu, sum_sq, offset));
      dot = __dadd_rn(dot, __shfl_xor_sync(0xffffffffu, dot, offset));
    }
    if (lane == 0) {
      warp_sums[0][warp] = sum_sq;
      warp_sums[1][warp] = dot;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double total_sq = 0.0, total_dot = 0.0;
      for (int i = 0; i < kWarpsPerBlock; ++i) {
        total_sq = __dadd_rn(total_sq, warp_sums[0][i]);
        total_dot = __dadd_rn(total_dot, warp_sums[1][i]);
      }
      const double inv_rms = 1.0 / sqrt(__dadd_rn(total_sq / static_cast<double>(dim), static_cast<double>(eps)));
      row_coefs[0] = inv_rms;
      row_coefs[1] = __dmul_rn(__dmul_rn(__dmul_rn(inv_rms, inv_rms), inv_rms), total_dot) / static_cast<double>(dim);
    }
    __syncthreads();
    const double inv_rms = row_coefs[0], coef = row_coefs[1];
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
      const double scaled = __dmul_rn(__dmul_rn(inv_rms, static_cast<double>(w[i])), static_cast<double>(dyr[i]));
      dxr[i] = static_cast<float>(__dsub_rn(scaled, __dmul_rn(coef, static_cast<double>(xr[i]))));
    }
    // warp_sums and row_coefs are reused by the next row.
    __syncthreads();
  }
}

}  // namespace

void cuda_rmsnorm(cudaStream_t stream, const float* x, const float* w, float* y, int64_t rows,
                  int64_t dim, float eps) {
  cuda_detail::check_count("cuda_rmsnorm rows", rows);
  cuda_detail::check_count("cuda_rmsnorm dim", dim);
  if (rows == 0 || dim == 0) return;
  const unsigned blocks =
      static_cast<unsigned>(rows < kMaxRmsnormBlocks ? rows : kMaxRmsnormBlocks);
  STREAMQ_LAUNCH(rmsnorm_kernel, blocks, kRmsnormBlock, 0, stream)(x, w, y, rows, dim, eps);
  CUDA_CHECK_LAUNCH("rmsnorm_kernel, rows=" + std::to_string(rows) +
                    ", dim=" + std::to_string(dim));
}

void cuda_rmsnorm_backward(cudaStream_t stream, const float* x, const float* w, const float* dy, float* dx,
                           int64_t rows, int64_t dim, float eps) {
  cuda_detail::check_count("cuda_rmsnorm_backward rows", rows);
  cuda_detail::check_count("cuda_rmsnorm_backward dim", dim);
  if (rows == 0 || dim == 0) return;
  const unsigned blocks =
      static_cast<unsigned>(rows < kMaxRmsnormBlocks ? rows : kMaxRmsnormBlocks);
  STREAMQ_LAUNCH(rmsnorm_backward_kernel, blocks, kRmsnormBlock, 0, stream)(x, w, dy, dx, rows, dim, eps);
  CUDA_CHECK_LAUNCH("rmsnorm_backward_kernel, rows=" + std::to_string(rows) +
                    ", dim=" + std::to_string(dim));
}

}  // namespace streamq
