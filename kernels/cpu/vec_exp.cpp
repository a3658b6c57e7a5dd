// The vectorized exp of vec_exp.h. One vector body (GCC/Clang vector
// extension, 16 float lanes) compiled for AVX-512, AVX2 and the baseline by
// target_clones; CMake builds this file with -ffp-contract=off so no clone
// fuses a multiply-add the others round twice: every ISA gives the same bits.
#include "kernels/cpu/vec_exp.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace streamq::cpu {
namespace {

constexpr int kW = 16;
using f32v = float __attribute__((vector_size(kW * sizeof(float))));
using i32v = int32_t __attribute__((vector_size(kW * sizeof(int32_t))));
using f64h = double __attribute__((vector_size(kW / 2 * sizeof(double))));
using f32h = float __attribute__((vector_size(kW / 2 * sizeof(float))));

// Cephes expf's domain: below kLo exp is under the smallest normal float;
// above kHi, n = round(x / ln 2) would reach 128 (2^n overflows).
constexpr float kLo = -87.33654475f;
constexpr float kHi = 88.37626266f;

#define STREAMQ_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define STREAMQ_INLINE inline __attribute__((always_inline))

STREAMQ_INLINE f32v splat(float v) { return f32v{} + v; }
STREAMQ_INLINE f32v load(const float* p) {
  f32v v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
STREAMQ_INLINE void store(float* p, f32v v) { std::memcpy(p, &v, sizeof v); }

// The lanes' exp, operation for operation what vec_exp_scalar does.
STREAMQ_INLINE f32v exp_lanes(f32v x) {
  const f32v xc = x < splat(kLo) ? splat(kLo) : (x > splat(kHi) ? splat(kHi) : x);
  // n = round(x / ln 2): adding 1.5 * 2^23 rounds to an integer (|x / ln 2| < 2^22).
  const f32v magic = splat(12582912.0f);
  const f32v t = xc * splat(1.44269504088896341f) + magic;
  const f32v n = t - magic;
  // r = x - n ln 2, ln 2 in two parts (the first exact in 9 bits, so n * it is exact).
  f32v r = xc - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  const f32v r2 = r * r;
  f32v p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r2 + r + splat(1.0f);
  // 2^n from n's bits: n in [-126, 127], a normal float.
  const i32v ni = __builtin_convertvector(n, i32v);
  const i32v bits = (ni + 127) << 23;
  f32v pow2;
  std::memcpy(&pow2, &bits, sizeof pow2);
  f32v e = p * pow2;
  e = x < splat(kLo) ? splat(0.0f) : e;
  e = x > splat(kHi) ? splat(std::numeric_limits<float>::infinity()) : e;
  return x != x ? x : e;  // NaN in, NaN out (the clamps above would hide it)
}

STREAMQ_INLINE f64h widen_lo(f32v v) {
  f32h h;
  std::memcpy(&h, &v, sizeof h);
  return __builtin_convertvector(h, f64h);
}
STREAMQ_INLINE f64h widen_hi(f32v v) {
  f32h h;
  std::memcpy(&h, reinterpret_cast<const char*>(&v) + sizeof h, sizeof h);
  return __builtin_convertvector(h, f64h);
}

}  // namespace

float vec_exp_scalar(float x) {
  if (x != x) return x;
  if (x < kLo) return 0.0f;
  if (x > kHi) return std::numeric_limits<float>::infinity();
  const float magic = 12582912.0f;
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float pow2;
  std::memcpy(&pow2, &bits, sizeof pow2);
  return p * pow2;
}

STREAMQ_VEC_CLONES double exp_shifted_sum(const float* x, float shift, int64_t n, float* out) {
  f64h acc_lo{}, acc_hi{};
  const f32v s = splat(shift);
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const f32v e = exp_lanes(load(x + i) - s);
    if (out) store(out + i, e);
    acc_lo += widen_lo(e);
    acc_hi += widen_hi(e);
  }
  if (i < n) {  // the tail through the same lanes, padded with -inf (exp 0)
    float buf[kW];
    const int64_t rest = n - i;
    for (int l = 0; l < kW; ++l) buf[l] = l < rest ? x[i + l] : -std::numeric_limits<float>::infinity();
    const f32v e = exp_lanes(load(buf) - s);
    store(buf, e);
    if (out) std::memcpy(out + i, buf, static_cast<size_t>(rest) * sizeof(float));
    acc_lo += widen_lo(e);
    acc_hi += widen_hi(e);
  }
  double lanes[kW];
  std::memcpy(lanes, &acc_lo, sizeof acc_lo);
  std::memcpy(lanes + kW / 2, &acc_hi, sizeof acc_hi);
  double sum = 0;
  for (const double v : lanes) sum += v;
  return sum;
}

STREAMQ_VEC_CLONES float max_of(const float* x, int64_t n) {
  float mx = x[0];
  int64_t i = 0;
  if (n >= kW) {
    f32v m = load(x);
    for (i = kW; i + kW <= n; i += kW) {
      const f32v v = load(x + i);
      m = v > m ? v : m;
    }
    float lanes[kW];
    store(lanes, m);
    mx = lanes[0];
    for (const float v : lanes) mx = v > mx ? v : mx;
  }
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

STREAMQ_VEC_CLONES void swiglu_span(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) {
    const f32v g = load(gate + i);
    // exp(-g) = inf for g < -88.4 gives silu = -0, the limit.
    store(out + i, g / (splat(1.0f) + exp_lanes(-g)) * load(up + i));
  }
  for (; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + vec_exp_scalar(-g)) * up[i];
  }
}

}  // namespace streamq::cpu
