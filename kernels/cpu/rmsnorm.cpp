// RMSNorm and its backward on the CPU (twin of kernels/cuda/rmsnorm.cu),
// parallel over rows.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel.h"

namespace streamq::cpu {

void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  check_nonnegative("rmsnorm", rows, dim);
  if (dim == 0) return;
  parallel_rows(rows, dim, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      // HF accumulates the mean square in float32; double makes the sum
      // independent of dim's size without changing the result's meaning.
      double sum_sq = 0.0;
      for (int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
      const float inv_rms =
          static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps));
      // HF order: normalize in float32, then multiply by the weight.
      for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * inv_rms) * w[i];
    }
  });
}

// y_i = x_i r w_i with r = (mean(x^2) + eps)^-1/2, so
// dx_j = r w_j dy_j - x_j r^3 / dim * sum_i dy_i w_i x_i.
// The two row sums and the per-element arithmetic run in double, rounded
// once to float at the end.
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t dim,
                      float eps) {
  check_nonnegative("rmsnorm_backward", rows, dim);
  if (dim == 0) return;
  parallel_rows(rows, dim, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      double sum_sq = 0.0, dot = 0.0;
      for (int64_t i = 0; i < dim; ++i) {
        sum_sq += static_cast<double>(xr[i]) * xr[i];
        dot += static_cast<double>(dyr[i]) * w[i] * xr[i];
      }
      const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps);
      const double coef = inv_rms * inv_rms * inv_rms * dot / static_cast<double>(dim);
      for (int64_t i = 0; i < dim; ++i)
        dxr[i] = static_cast<float>(inv_rms * w[i] * dyr[i] - coef * xr[i]);
    }
  });
}

}  // namespace streamq::cpu
