// GPU straight-through estimator ops (see ste.cuh).
#include "kernels/cuda/ste.cuh"

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

// One thread per element (grid-stride): the CPU twin's formula with each
// float64 step an explicitly rounded intrinsic (no FMA contraction), rint's
// round half to even as std::nearbyint in the default mode.
__global__ void fake_quant_ste_kernel(const float* __restrict__ w, int64_t total, int64_t cols, int64_t group,
                                      int64_t groups, const double* __restrict__ params, double top, bool free_min,
                                      float* __restrict__ wq, uint8_t* __restrict__ mask) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t row = i / cols, c = i - row * cols;
    const double* p = params + 2 * (row * groups + c / group);
    const double scale = p[0], zero = p[1];
    const double x = static_cast<double>(w[i]);
    const double u = free_min ? rint(__ddiv_rn(__dsub_rn(x, zero), scale)) : __dadd_rn(rint(__ddiv_rn(x, scale)), zero);
    const double code = fmin(fmax(u, 0.0), top);
    wq[i] = static_cast<float>(free_min ? __dadd_rn(__dmul_rn(scale, code), zero)
                                        : __dmul_rn(scale, __dsub_rn(code, zero)));
    mask[i] = u >= 0.0 && u <= top ? 1 : 0;
  }
}

__global__ void ste_mask_grad_kernel(const uint8_t* __restrict__ mask, float* __restrict__ g, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    if (!mask[i]) g[i] = 0.0f;
}

}  // namespace

void cuda_fake_quant_ste(cudaStream_t stream, const float* w, int64_t rows, int64_t cols, int64_t group,
                         const double* params, int32_t maxq, bool free_min, float* wq, uint8_t* mask) {
  cuda_detail::check_count("cuda_fake_quant_ste rows", rows);
  cuda_detail::check_count("cuda_fake_quant_ste cols", cols);
  if (rows == 0 || cols == 0) return;
  if (group < 1 || group > cols || maxq < 1)
    throw InternalError("cuda_fake_quant_ste: group " + std::to_string(group) + " (cols " + std::to_string(cols) +
                        "), maxq " + std::to_string(maxq));
  const int64_t total = rows * cols, groups = (cols + group - 1) / group;
  STREAMQ_LAUNCH(fake_quant_ste_kernel, cuda_detail::elementwise_blocks(total), cuda_detail::kElementwiseBlock, 0,
                 stream)(w, total, cols, group, groups, params, static_cast<double>(maxq), free_min, wq, mask);
  CUDA_CHECK_LAUNCH("fake_quant_ste_kernel, rows=" + std::to_string(rows) + ", cols=" + std::to_string(cols));
}

void cuda_ste_mask_grad(cudaStream_t stream, const uint8_t* mask, float* g, int64_t n) {
  cuda_detail::check_count("cuda_ste_mask_grad", n);
  if (n == 0) return;
  STREAMQ_LAUNCH(ste_mask_grad_kernel, cuda_detail::elementwise_blocks(n), cuda_detail::kElementwiseBlock, 0,
                 stream)(mask, g, n);
  CUDA_CHECK_LAUNCH("ste_mask_grad_kernel, n=" + std::to_string(n));
}

}  // namespace streamq
