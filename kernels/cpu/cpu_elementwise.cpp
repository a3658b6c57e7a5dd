// Elementwise and row-wise ops on the CPU: RMSNorm, SwiGLU, residual add, bias
// add. Parallel over disjoint ranges with oneTBB; each output element is
// computed by one task from its own inputs only, so results do not depend on
// the thread count.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace streamq::cpu {
namespace {

// Below this many elements per task the scheduling overhead outweighs the work.
constexpr int64_t kMinElementsPerTask = 16384;

void check_nonnegative(const char* op, int64_t a, int64_t b = 0) {
  if (a < 0 || b < 0) {
    throw InternalError(std::string(op) + ": negative size (" + std::to_string(a) + ", " +
                        std::to_string(b) + ")");
  }
}

// Runs body(begin, end) over [0, n) in chunks of at least kMinElementsPerTask.
template <typename Body>
void parallel_chunks(int64_t n, const Body& body) {
  if (n <= kMinElementsPerTask) {
    if (n > 0) body(int64_t{0}, n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, kMinElementsPerTask),
                    [&](const tbb::blocked_range<int64_t>& r) { body(r.begin(), r.end()); });
}

// Same over rows, with the grain chosen so a task still gets enough elements.
template <typename Body>
void parallel_rows(int64_t rows, int64_t cols, const Body& body) {
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, cols));
  if (rows <= grain) {
    if (rows > 0) body(int64_t{0}, rows);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, grain),
                    [&](const tbb::blocked_range<int64_t>& r) { body(r.begin(), r.end()); });
}

}  // namespace

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

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  check_nonnegative("swiglu", n);
  parallel_chunks(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float g = gate[i];
      // exp(-g) overflows to inf for g < -88, giving silu = -0: the right limit.
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void add_inplace(float* y, const float* x, int64_t n) {
  check_nonnegative("add_inplace", n);
  parallel_chunks(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] += x[i];
  });
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) {
  check_nonnegative("add_bias", rows, cols);
  parallel_rows(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * cols;
      for (int64_t j = 0; j < cols; ++j) yr[j] += bias[j];
    }
  });
}

}  // namespace streamq::cpu
