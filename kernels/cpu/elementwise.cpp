// Elementwise ops on the CPU (twins of kernels/cuda/elementwise.cu): SwiGLU,
// residual add, difference, bias add, and SwiGLU's backward. Parallel over disjoint ranges with oneTBB; each output element is
// computed by one task from its own inputs only, so results do not depend on
// the thread count.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_exp.h"

namespace streamq::cpu {

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  check_nonnegative("swiglu", n);
  // Vectorized exp (vec_exp.h, <= 2 ulp; libm's scalar expf was 3% of eval):
  // exp(-g) is inf for g < -88.4, giving silu = -0, the right limit.
  parallel_chunks(n, [&](int64_t i0, int64_t i1) { swiglu_span(gate + i0, up + i0, out + i0, i1 - i0); });
}

// With sig = 1 / (1 + exp(-g)): silu(g) = g sig and
// silu'(g) = sig (1 + g (1 - sig)). Each element reads gate, up and dout
// before writing, so an output may alias an input.
void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n) {
  check_nonnegative("swiglu_backward", n);
  parallel_chunks(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float g = gate[i];
      const float u = up[i];
      const float dy = dout[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));  // 0 for g < -88 (exp overflows): the limit
      const float dsilu = sig * (1.0f + g * (1.0f - sig));
      dgate[i] = dy * u * dsilu;
      dup[i] = dy * (g * sig);
    }
  });
}

void add_inplace(float* y, const float* x, int64_t n) {
  check_nonnegative("add_inplace", n);
  parallel_chunks(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] += x[i];
  });
}

void subtract(const float* a, const float* b, float* out, int64_t n) {
  check_nonnegative("subtract", n);
  parallel_chunks(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = a[i] - b[i];
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
