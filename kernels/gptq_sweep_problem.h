// The exact-variant GPTQ sweep (GPTQ, GPTAQ's P1, CAE's P2) as a plain problem
// of raw arrays, sizes and grid options, shared by the float32 CPU twin
// (kernels/cpu/gptq_sweep.h) and the CUDA sweep (kernels/cuda/gptq_sweep.cuh).
// Backend::gptq_sweep runs it. kernels/ knows no src/methods types:
// src/methods/sweep_problem.h translates FactoredHessian + QuantConfig into
// this. The grid math lives here too, written once for host and device, so
// both sides round alike.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "src/core/error.h"

#if defined(__CUDACC__)
#define SQ_SWEEP_HD __host__ __device__ __forceinline__
#else
#define SQ_SWEEP_HD inline
#endif

namespace streamq {

// Widest block of columns one fused launch handles (shared-memory slabs are sized for it).
constexpr int64_t kSweepMaxBlock = 128;
// Bound on the MSE clip search's candidates (the GPU keeps one error per candidate).
constexpr int kSweepMaxMseSteps = 4096;

// methods/grid.h's Grid flattened (QuantConfig explains each option).
struct SweepGrid {
  int bits = 4;              // 2..8
  bool sym = true;
  bool gptq_style = false;   // GridStyle::Gptq; false: GridStyle::Quarot
  bool mse = false;          // ClipSearch::Mse; false: min/max
  int mse_grid = 100;        // candidates shrink the range by p = 1 - i / mse_grid ...
  int mse_steps = 80;        // ... for i < mse_steps (= int(mse_max_shrink * mse_grid))
  double mse_norm = 2.4;     // loss sum |q - x|^mse_norm
  int zero_min = 1;          // lowest asymmetric zero point: 1 for the GPTQ v1 checkpoint, else 0
  SQ_SWEEP_HD int maxq() const { return (1 << bits) - 1; }
};

// One linear's sweep. Pointers are all host or all device memory, as the
// function called says. Dead columns are zeroed, per-channel grids are fitted
// before that and static-group grids after it, exactly as gptq_quantize does.
struct SweepProblem {
  int64_t m = 0, n = 0;           // (out, in)
  const float* w = nullptr;       // [m, n] original column order
  const float* u = nullptr;       // [n, n] upper, (H + damp I)^-1 = U^T U, processing order
  const float* p1 = nullptr;      // [n, n] GPTAQ's P1 (strictly upper, processing order) or null
  const float* p2 = nullptr;      // [n, n] CAE's P2 or null
  const int32_t* perm = nullptr;  // [n] processing position -> original column
  const uint8_t* dead = nullptr;  // [n] original order, 1 where diag(H) == 0; null: none
  SweepGrid grid;
  int64_t group = -1;             // columns per group; -1: one grid per row
  bool static_groups = false;     // group grids fitted up front in original order
  bool p1_original = false;       // P1 term uses w0_j instead of the compensated w_j
  int64_t blocksize = 128;        // lazy-batch block, 1..kSweepMaxBlock

  int64_t ngroups() const { return group > 0 ? (n + group - 1) / group : 1; }
  // W0 (the weights after the dead fix, before any update) feeds P2 and p1_original.
  bool needs_w0() const { return p2 != nullptr || (p1 != nullptr && p1_original); }
};

// Where the results go (same memory space as the problem's pointers).
struct SweepOutput {
  uint8_t* codes = nullptr;  // [m, n] original column order, in [0, 2^bits - 1]
  float* q = nullptr;        // [m, n] dequantized, original column order
  float* scales = nullptr;   // [ngroups, m], fp16-representable
  float* zeros = nullptr;    // [ngroups, m], integer values
};

// Throws InternalError (an argument error here is a caller's bug) naming `who`.
// host_pointers: the arrays may be read (perm must be a permutation).
inline void validate_sweep_problem(const SweepProblem& p, const SweepOutput& out, const char* who,
                                   bool host_pointers) {
  const auto fail = [&](const std::string& why) { throw InternalError(std::string(who) + ": " + why); };
  if (p.m < 0 || p.n < 0) fail("negative shape");
  if (p.grid.bits < 2 || p.grid.bits > 8) fail("bits " + std::to_string(p.grid.bits) + " outside 2..8");
  if (p.blocksize < 1 || p.blocksize > kSweepMaxBlock)
    fail("blocksize " + std::to_string(p.blocksize) + " outside 1.." + std::to_string(kSweepMaxBlock));
  if (p.group == 0 || p.group < -1) fail("group " + std::to_string(p.group) + " (want -1 or > 0)");
  if (p.static_groups && p.group < 0) fail("static groups need a group size");
  if (p.grid.mse && (p.grid.mse_grid < 1 || p.grid.mse_steps < 1 || p.grid.mse_steps > kSweepMaxMseSteps))
    fail("MSE search of " + std::to_string(p.grid.mse_steps) + " steps on a grid of " +
         std::to_string(p.grid.mse_grid));
  if (p.grid.zero_min < 0 || p.grid.zero_min > 1) fail("zero_min must be 0 or 1");
  if (p.m == 0 || p.n == 0) return;
  if (!p.w || !p.u || !p.perm) fail("w, u and perm are required");
  if (!out.codes || !out.q || !out.scales || !out.zeros) fail("every output array is required");
  if (!host_pointers) return;
  std::vector<uint8_t> seen(static_cast<size_t>(p.n), 0);
  for (int64_t c = 0; c < p.n; ++c) {
    const int32_t o = p.perm[c];
    if (o < 0 || o >= p.n || seen[static_cast<size_t>(o)]++) fail("perm is not a permutation of 0..n-1");
  }
}

// g_idx[original column] = its group: 0 per channel; original-order groups
// when static; processing-order groups otherwise. Host perm.
inline void sweep_g_idx(const SweepProblem& p, int32_t* g_idx /*[n]*/) {
  for (int64_t c = 0; c < p.n; ++c) {
    const int64_t orig = p.perm[c];
    g_idx[orig] = static_cast<int32_t>(p.group < 0 ? 0 : (p.static_groups ? orig / p.group : c / p.group));
  }
}

template <typename T>
struct SweepParams {
  T scale = 1;
  T zero = 0;  // an integer value
};

// ---- grid math, host and device. Every multiply and divide is an explicitly
// rounded op: nvcc would otherwise contract a*b+c into an FMA, which rounds
// differently from the CPU twin (which g++ never contracts in ISO C++ mode).
namespace sweep_math {

template <typename T>
SQ_SWEEP_HD T mul(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return __fmul_rn(a, b); else return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
template <typename T>
SQ_SWEEP_HD T add(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return __fadd_rn(a, b); else return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
template <typename T>
SQ_SWEEP_HD T sub(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return __fsub_rn(a, b); else return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
template <typename T>
SQ_SWEEP_HD T div(T a, T b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return __fdiv_rn(a, b); else return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
// Round half to even (grid.cpp's std::nearbyint in the default rounding mode).
template <typename T>
SQ_SWEEP_HD T rint_even(T v) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return rintf(v); else return rint(v);
#else
  return std::nearbyint(v);
#endif
}
template <typename T>
SQ_SWEEP_HD T power(T v, T e) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return powf(v, e); else return pow(v, e);
#else
  return std::pow(v, e);
#endif
}
template <typename T>
SQ_SWEEP_HD T infinity() {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) return __int_as_float(0x7f800000); else return __longlong_as_double(0x7ff0000000000000LL);
#else
  return std::numeric_limits<T>::infinity();
#endif
}
template <typename T>
SQ_SWEEP_HD bool finite(T v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}
// std::min / std::max / std::clamp semantics exactly (NaN never wins min/max
// against a number already held).
template <typename T> SQ_SWEEP_HD T min_of(T a, T b) { return b < a ? b : a; }
template <typename T> SQ_SWEEP_HD T max_of(T a, T b) { return a < b ? b : a; }
template <typename T> SQ_SWEEP_HD T clamp_to(T v, T lo, T hi) { return v < lo ? lo : (hi < v ? hi : v); }
template <typename T> SQ_SWEEP_HD T abs_of(T v) { return v < T(0) ? -v : v; }

// The nearest fp16 value to s > 0 (ties to even), clamped to
// [2^-24, 65504] as round_scale_fp16 does; exact in float and double: an fp16
// value has 11 significant bits (subnormals a step of 2^-24), so s is rounded
// to a multiple of that power-of-two quantum.
template <typename T>
SQ_SWEEP_HD T round_fp16(T s) {
  const T min_subnormal = T(5.9604644775390625e-08);  // 2^-24
  const T max_finite = T(65504);
  if (!(s > min_subnormal)) return min_subnormal;
  if (s >= max_finite) return max_finite;
  int e = 0;
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) frexpf(s, &e); else frexp(s, &e);  // s = f 2^e, f in [0.5, 1)
  const int qe = e - 11 < -24 ? -24 : e - 11;
  const T quantum = sizeof(T) == 4 ? T(ldexpf(1.0f, qe)) : T(ldexp(1.0, qe));
#else
  std::frexp(s, &e);
  const int qe = e - 11 < -24 ? -24 : e - 11;
  const T quantum = std::ldexp(T(1), qe);
#endif
  return mul(rint_even(div(s, quantum)), quantum);
}

// grid.cpp's Grid::from_range (QuaRot or GPTQ convention, fp16 scale, zero
// point honouring zero_min). xmin <= 0 <= xmax.
template <typename T>
SQ_SWEEP_HD SweepParams<T> from_range(const SweepGrid& g, T xmin, T xmax) {
  if (g.gptq_style && xmin == T(0) && xmax == T(0)) {
    xmin = T(-1);  // GPTQ's grid for an all-zero row
    xmax = T(1);
  }
  const T maxq = T(g.maxq());
  const T half = T(1 << (g.bits - 1));
  SweepParams<T> p;
  if (!g.gptq_style) {
    if (g.sym) {
      const T amax = max_of(max_of(-xmin, xmax), T(1e-5));
      p.scale = div(amax, sub(half, T(1)));
      p.zero = half;
    } else {
      p.scale = div(max_of(sub(xmax, xmin), T(1e-5)), maxq);
    }
  } else {
    if (g.sym) {
      xmax = max_of(-xmin, xmax);
      if (xmin < T(0)) xmin = -xmax;
    }
    p.scale = div(sub(xmax, xmin), maxq);
    if (g.sym) p.zero = T((g.maxq() + 1) / 2);
  }
  p.scale = round_fp16(p.scale);
  if (g.sym) return p;
  const T lo = T(g.zero_min);
  p.zero = clamp_to(rint_even(div(-xmin, p.scale)), T(0), maxq);
  if (p.zero < lo) {
    p.zero = lo;
    p.scale = round_fp16(max_of(p.scale, div(xmax, sub(maxq, lo))));
  }
  return p;
}

template <typename T>
SQ_SWEEP_HD int code_of(const SweepGrid& g, T x, const SweepParams<T>& p) {
  T c = add(rint_even(div(x, p.scale)), p.zero);
  if (!(c >= T(0))) c = T(0);  // also NaN (flagged by the caller)
  if (c > T(g.maxq())) c = T(g.maxq());
  return static_cast<int>(c);
}
template <typename T>
SQ_SWEEP_HD T dequant(int code, const SweepParams<T>& p) {
  return mul(p.scale, sub(T(code), p.zero));
}

// The range of x[0], x[stride], ...: min and max including 0.
template <typename T>
SQ_SWEEP_HD void range_of(const T* x, int64_t len, int64_t stride, T* xmin, T* xmax) {
  T lo = 0, hi = 0;
  for (int64_t i = 0; i < len; ++i) {
    lo = min_of(lo, x[i * stride]);
    hi = max_of(hi, x[i * stride]);
  }
  *xmin = lo;
  *xmax = hi;
}
// The MSE search symmetrizes the range first (both conventions).
template <typename T>
SQ_SWEEP_HD void mse_symmetrize(const SweepGrid& g, T* xmin, T* xmax) {
  if (!g.sym) return;
  const T amax = max_of(-*xmin, *xmax);
  *xmax = amax;
  *xmin = *xmin < T(0) ? -amax : T(0);
}
// Candidate i of the MSE search: the range shrunk by 1 - i / mse_grid.
template <typename T>
SQ_SWEEP_HD SweepParams<T> mse_candidate(const SweepGrid& g, T xmin, T xmax, int i) {
  const T shrink = sub(T(1), div(T(i), T(g.mse_grid)));
  return from_range(g, mul(shrink, xmin), mul(shrink, xmax));
}
// sum |q - x|^norm over the values, in index order.
template <typename T>
SQ_SWEEP_HD T mse_loss(const SweepGrid& g, const SweepParams<T>& p, const T* x, int64_t len, int64_t stride) {
  T err = 0;
  for (int64_t k = 0; k < len; ++k) {
    const T v = x[k * stride];
    err = add(err, power(abs_of(sub(dequant(code_of(g, v, p), p), v)), T(g.mse_norm)));
  }
  return err;
}
// The search's winner from every candidate's loss (first strict minimum; the
// unshrunk range when no loss is finite), as Grid::fit picks it.
template <typename T>
SQ_SWEEP_HD SweepParams<T> mse_pick(const SweepGrid& g, T xmin, T xmax, const T* losses) {
  SweepParams<T> best = from_range(g, xmin, xmax);
  T best_err = infinity<T>();
  for (int i = 0; i < g.mse_steps; ++i) {
    if (losses[i] < best_err) {
      best_err = losses[i];
      best = mse_candidate(g, xmin, xmax, i);
    }
  }
  return best;
}
// Grid::fit, sequentially (the CPU twin; the GPU spreads the candidates over
// threads and then calls mse_pick on their losses, which is the same sum).
template <typename T>
SQ_SWEEP_HD SweepParams<T> fit(const SweepGrid& g, const T* x, int64_t len, int64_t stride, T* losses) {
  T xmin, xmax;
  range_of(x, len, stride, &xmin, &xmax);
  if (!g.mse) return from_range(g, xmin, xmax);
  mse_symmetrize(g, &xmin, &xmax);
  for (int i = 0; i < g.mse_steps; ++i) losses[i] = mse_loss(g, mse_candidate(g, xmin, xmax, i), x, len, stride);
  return mse_pick(g, xmin, xmax, losses);
}

// What column j's quantization adds to a later column k of the same row:
// -e_j U[j,k] + a_j P1[j,k] + c_j P2[j,k], summed in this order everywhere.
template <typename T>
SQ_SWEEP_HD T update_term(T e, T u, bool has_p1, T a, T p1, bool has_p2, T c, T p2) {
  T d = mul(-e, u);
  if (has_p1) d = add(d, mul(a, p1));
  if (has_p2) d = add(d, mul(c, p2));
  return d;
}

}  // namespace sweep_math
}  // namespace streamq
