// GPU SDE banded ops (see sde_band.cuh).
#include "kernels/cuda/sde_band.cuh"

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

// One thread per element of U D (grid-stride), the CPU twin's order: the
// diagonal, then per offset i the upper then the lower band's term.
__global__ void sde_banded_product_kernel(const float* __restrict__ u, const float* __restrict__ s,
                                          const float* __restrict__ params, int64_t total, int64_t rank,
                                          int64_t band, float* __restrict__ ud) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t a = e / rank, c = e - a * rank;
    const float* ua = u + a * rank;
    float acc = __fmul_rn(ua[c], __fadd_rn(s[c], params[c]));
    for (int64_t i = 1; i <= band; ++i) {
      if (c >= i) acc = __fadd_rn(acc, __fmul_rn(ua[c - i], params[(2 * i - 1) * rank + (c - i)]));
      if (c + i < rank) acc = __fadd_rn(acc, __fmul_rn(ua[c + i], params[2 * i * rank + c]));
    }
    ud[e] = acc;
  }
}

// The float products are exact in float64, so each partial sum is one
// rounded add per term, as on the CPU.
__device__ double band_dot(const float* a, const float* b, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4)
    for (int l = 0; l < 4; ++l)
      acc[l] = __dadd_rn(acc[l], __dmul_rn(static_cast<double>(a[k + l]), static_cast<double>(b[k + l])));
  for (; k < n; ++k) acc[0] = __dadd_rn(acc[0], __dmul_rn(static_cast<double>(a[k]), static_cast<double>(b[k])));
  return __dadd_rn(__dadd_rn(acc[0], acc[1]), __dadd_rn(acc[2], acc[3]));
}

__global__ void sde_band_grad_kernel(const float* __restrict__ m, const float* __restrict__ vt, int64_t rank,
                                     int64_t cols, int64_t total, float* __restrict__ dparams) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride) {
    const int64_t slot = o / rank, j = o - slot * rank;
    const int64_t i = (slot + 1) / 2;
    float v = 0.0f;
    if (slot == 0) v = static_cast<float>(band_dot(m + j * cols, vt + j * cols, cols));
    else if (j + i < rank)
      v = static_cast<float>(slot % 2 == 1 ? band_dot(m + j * cols, vt + (j + i) * cols, cols)
                                           : band_dot(m + (j + i) * cols, vt + j * cols, cols));
    dparams[o] = v;
  }
}

void check_band(const char* op, int64_t rank, int64_t band) {
  if (band < 0 || (rank > 0 && band > rank - 1))
    throw InternalError(std::string(op) + ": band " + std::to_string(band) + " outside 0.." + std::to_string(rank - 1));
}

}  // namespace

void cuda_sde_banded_product(cudaStream_t stream, const float* u, const float* s, const float* params, int64_t rows,
                             int64_t rank, int64_t band, float* ud) {
  cuda_detail::check_count("cuda_sde_banded_product rows", rows);
  cuda_detail::check_count("cuda_sde_banded_product rank", rank);
  check_band("cuda_sde_banded_product", rank, band);
  if (rows == 0 || rank == 0) return;
  const int64_t total = rows * rank;
  STREAMQ_LAUNCH(sde_banded_product_kernel, cuda_detail::elementwise_blocks(total), cuda_detail::kElementwiseBlock, 0,
                 stream)(u, s, params, total, rank, band, ud);
  CUDA_CHECK_LAUNCH("sde_banded_product_kernel, rows=" + std::to_string(rows) + ", rank=" + std::to_string(rank));
}

void cuda_sde_band_grad(cudaStream_t stream, const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band,
                        float* dparams) {
  cuda_detail::check_count("cuda_sde_band_grad rank", rank);
  cuda_detail::check_count("cuda_sde_band_grad cols", cols);
  check_band("cuda_sde_band_grad", rank, band);
  if (rank == 0) return;
  const int64_t total = (2 * band + 1) * rank;
  STREAMQ_LAUNCH(sde_band_grad_kernel, cuda_detail::elementwise_blocks(total), cuda_detail::kElementwiseBlock, 0,
                 stream)(m, vt, rank, cols, total, dparams);
  CUDA_CHECK_LAUNCH("sde_band_grad_kernel, rank=" + std::to_string(rank) + ", band=" + std::to_string(band));
}

}  // namespace streamq
