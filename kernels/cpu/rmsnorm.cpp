// RMSNorm on the CPU (twin of kernels/cuda/rmsnorm.cu), parallel over rows.
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

}  // namespace streamq::cpu
