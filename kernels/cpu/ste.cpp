// The straight-through estimator's ops on the CPU (twins of
// kernels/cuda/ste.cu): SDE training's fake quantization of a weight with
// its mask, and the mask applied to a gradient. Every element is computed by
// one task from its own inputs in float64 with correctly rounded operations
// (this file is built without FMA contraction), so results are the CUDA
// twin's bits and do not depend on the thread count.
#include <cmath>
#include <string>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel.h"

namespace streamq::cpu {

void check_fake_quant_ste_args(int64_t rows, int64_t cols, int64_t group, int32_t maxq) {
  check_nonnegative("fake_quant_ste", rows, cols);
  if (cols > 0 && (group < 1 || group > cols))
    throw InternalError("fake_quant_ste: group " + std::to_string(group) + " outside 1.." + std::to_string(cols));
  if (maxq < 1) throw InternalError("fake_quant_ste: maxq " + std::to_string(maxq) + " < 1");
}

void fake_quant_ste(const float* w, int64_t rows, int64_t cols, int64_t group, const double* params, int32_t maxq,
                    bool free_min, float* wq, uint8_t* mask) {
  check_fake_quant_ste_args(rows, cols, group, maxq);
  if (rows == 0 || cols == 0) return;
  const int64_t groups = (cols + group - 1) / group;
  const double top = static_cast<double>(maxq);
  parallel_rows(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row)
      for (int64_t c = 0; c < cols; ++c) {
        const double* p = params + 2 * (row * groups + c / group);
        const double scale = p[0], zero = p[1];
        const int64_t i = row * cols + c;
        const double x = w[i];
        // std::nearbyint in the default mode: round half to even (CUDA's rint).
        const double u = free_min ? std::nearbyint((x - zero) / scale) : std::nearbyint(x / scale) + zero;
        const double code = std::fmin(std::fmax(u, 0.0), top);
        wq[i] = static_cast<float>(free_min ? scale * code + zero : scale * (code - zero));
        mask[i] = u >= 0.0 && u <= top ? 1 : 0;
      }
  });
}

void ste_mask_grad(const uint8_t* mask, float* g, int64_t n) {
  check_nonnegative("ste_mask_grad", n);
  parallel_chunks(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      if (!mask[i]) g[i] = 0.0f;
  });
}

}  // namespace streamq::cpu
