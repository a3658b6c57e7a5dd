// Test-side glue for the float32 sweeps (kernels/gptq_sweep_problem.h; the
// problem is built by src/methods/sweep_problem.h): tolerances, random
// layers, the cases, and the comparisons shared by the CPU tests
// (tests/kernels/test_gptq_sweep32.cpp, the sweep rows of
// tests/kernels/test_backend_ops.cpp) and the GPU test
// (tests/gpu/test_cuda_gptq_sweep.cpp). Header-only: the GPU test binary
// links neither test_util.cpp nor naive_reference.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "kernels/gptq_sweep_problem.h"
#include "src/methods/gptq.h"
#include "src/methods/quant_config.h"
#include "src/methods/quant_result.h"
#include "src/methods/sweep_problem.h"

namespace streamq::test {

// How far two float32 sweeps may drift from the float64 one (and from each
// other: the GPU's GEMMs sum in another order than the twin's loops, a
// perturbation of the same size as float32 rounding itself). Float32 carries
// ~1e-6 relative error in the compensated weights after n updates, so a code flips only where x/s sits
// within ~1e-5 of a rounding boundary (or a grid fit's fp16 scale or MSE
// argmin sits that close to a tie). A flip changes that column's error by a
// whole step, which the rest of the row then compensates differently: the row
// diverges from there onto another, equally valid GPTQ path. Measured over 30
// seeds x 48 cases: pooled agreement >= 0.99973, worst single case 0.9902,
// worst per-case objective change 0.54%. A defect (a wrong index or term)
// changes most codes and the objective by tens of percent.
constexpr double kSweep32MinCodeAgreement = 0.999;     // all cases pooled: ~3x the worst seen
// A small case (17 rows) loses up to ~6% agreement per fully diverged row:
// 0.95 tolerates one such row, not two.
constexpr double kSweep32MinCaseCodeAgreement = 0.95;
// |obj32 / obj64 - 1| per case: a diverged row's error moves by a fraction of
// its own ~1/m share, in either direction.
constexpr double kSweep32MaxObjectiveRel = 0.03;
// Pooled over all cases the moves average out; a bias (say float32 error that
// systematically worsens the fit) would not.
constexpr double kSweep32MaxPooledObjectiveRel = 1e-3;  // measured <= 3.4e-5

// The problem builder itself (sweep_op_supports, sweep_grid_from, the
// float inputs) is src/methods/sweep_problem.h; these names stay for the
// GPU test (tests/gpu/test_cuda_gptq_sweep.cpp).
using Sweep32Inputs = SweepHostInputs;
inline SweepHostInputs make_sweep32_inputs(const double* w, int64_t m, int64_t n, const FactoredHessian& f,
                                           const QuantConfig& cfg) {
  return make_sweep_host_inputs(w, m, n, f, cfg);
}

// v rounded through float, back in double: the float64 sweep then solves the
// very problem the float32 sweeps get, so only arithmetic precision differs.
inline std::vector<double> rounded_to_float(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}
inline FactoredHessian rounded_to_float(const FactoredHessian& f) {
  FactoredHessian r = f;
  r.u = rounded_to_float(f.u);
  r.p1 = rounded_to_float(f.p1);
  r.p2 = rounded_to_float(f.p2);
  return r;
}

// Host result arrays; output() points into them.
struct Sweep32Result {
  std::vector<uint8_t> codes;
  std::vector<float> q, scales, zeros;
  std::vector<int32_t> g_idx;
  SweepOutput output() { return {codes.data(), q.data(), scales.data(), zeros.data()}; }
};

inline Sweep32Result make_sweep32_result(const SweepProblem& p) {
  Sweep32Result r;
  const size_t mn = static_cast<size_t>(p.m * p.n), gm = static_cast<size_t>(p.ngroups() * p.m);
  r.codes.assign(mn, 0xAB);  // poison: every element must be written
  r.q.assign(mn, std::nanf(""));
  r.scales.assign(gm, std::nanf(""));
  r.zeros.assign(gm, std::nanf(""));
  r.g_idx.assign(static_cast<size_t>(p.n), -7);
  if (p.m > 0 && p.n > 0) sweep_g_idx(p, r.g_idx.data());
  return r;
}

// A random linear: W ~ N(0, 1); inputs X [n, tokens] with shared latent
// factors (correlated channels) and channel scales spread ~10x; the FP flow
// X~ = X + deviation * noise; optionally one dead input (zero in both flows).
// H = 2 X X^T and cross = 2 dX X^T, as the pipeline scales them.
struct SweepLayer {
  int64_t m = 0, n = 0, tokens = 0;
  std::vector<double> w, h, cross;
};

inline SweepLayer random_sweep_layer(std::mt19937_64& rng, int64_t m, int64_t n, bool dead_input,
                                     double deviation) {
  SweepLayer L;
  L.m = m;
  L.n = n;
  L.tokens = 2 * n + 16;
  const int64_t t = L.tokens, rank = std::max<int64_t>(2, n / 4);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(-1.15, 1.15);
  L.w.resize(static_cast<size_t>(m * n));
  for (auto& v : L.w) v = nd(rng);
  std::vector<double> mix(static_cast<size_t>(n * rank)), z(static_cast<size_t>(rank * t));
  for (auto& v : mix) v = nd(rng);
  for (auto& v : z) v = nd(rng);
  std::vector<double> x(static_cast<size_t>(n * t)), dx(x.size());
  const int64_t dead = dead_input ? static_cast<int64_t>(rng() % static_cast<uint64_t>(n)) : -1;
  for (int64_t i = 0; i < n; ++i) {
    const double scale = std::exp(ud(rng));
    for (int64_t k = 0; k < t; ++k) {
      double v = 0.5 * nd(rng);
      for (int64_t r = 0; r < rank; ++r) v += mix[i * rank + r] * z[r * t + k] / std::sqrt(double(rank));
      x[i * t + k] = i == dead ? 0.0 : scale * v;
      dx[i * t + k] = i == dead ? 0.0 : deviation * scale * nd(rng);
    }
  }
  L.h.assign(static_cast<size_t>(n * n), 0.0);
  L.cross.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) {
      double hab = 0, cab = 0;
      for (int64_t k = 0; k < t; ++k) {
        hab += x[a * t + k] * x[b * t + k];
        cab += dx[a * t + k] * x[b * t + k];
      }
      L.h[a * n + b] = 2 * hab;
      L.cross[a * n + b] = 2 * cab;
    }
  return L;
}

// The layer objective sum over rows of (w - q) H (w - q)^T, H undamped.
template <typename Q>
double h_weighted_error(const std::vector<double>& w, const std::vector<Q>& q, const std::vector<double>& h,
                        int64_t m, int64_t n) {
  double total = 0;
  std::vector<double> d(static_cast<size_t>(n));
  for (int64_t row = 0; row < m; ++row) {
    for (int64_t c = 0; c < n; ++c) d[c] = w[row * n + c] - static_cast<double>(q[row * n + c]);
    for (int64_t a = 0; a < n; ++a) {
      double s = 0;
      for (int64_t b = 0; b < n; ++b) s += h[a * n + b] * d[b];
      total += d[a] * s;
    }
  }
  return total;
}

// ||a - b||_F / ||b||_F.
template <typename A, typename B>
double relative_frobenius(const std::vector<A>& a, const std::vector<B>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    diff += d * d;
    norm += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// Codes of `got` against another sweep's (original order); where a code and
// its grid agree, q must be identical (an fp16 scale times an integer below
// 2^9 is exact in float). `bad` names the first element that breaks that.
struct SweepAgreement {
  int64_t agree = 0, total = 0;
  std::string bad;
  double fraction() const { return total > 0 ? static_cast<double>(agree) / static_cast<double>(total) : 1.0; }
};
template <typename Q, typename S>
SweepAgreement compare_sweep_codes(const Sweep32Result& got, const std::vector<uint8_t>& codes,
                                   const std::vector<Q>& q, const std::vector<S>& scales,
                                   const std::vector<S>& zeros, int64_t m, int64_t n) {
  SweepAgreement a;
  for (int64_t row = 0; row < m; ++row)
    for (int64_t col = 0; col < n; ++col) {
      const int64_t i = row * n + col, gi = got.g_idx[col] * m + row;
      ++a.total;
      if (got.codes[i] != codes[i]) continue;
      ++a.agree;
      const bool same_grid = static_cast<double>(got.scales[gi]) == static_cast<double>(scales[gi]) &&
                             static_cast<double>(got.zeros[gi]) == static_cast<double>(zeros[gi]);
      if (same_grid && static_cast<double>(got.q[i]) != static_cast<double>(q[i]) && a.bad.empty())
        a.bad = "row " + std::to_string(row) + " col " + std::to_string(col) + ": q " + std::to_string(got.q[i]) +
                " vs " + std::to_string(static_cast<double>(q[i])) + " with the same code and grid";
    }
  return a;
}

// A configuration of the exact sweep and the shape it runs on.
struct SweepCase {
  int64_t m, n;
  QuantConfig cfg;
  bool dead;
  std::string name() const {
    return cfg.describe() + (cfg.act_order ? " act-order" : "") + (cfg.static_groups ? " static" : "") +
           (cfg.p1_original ? " p1-original" : "") + " B=" + std::to_string(cfg.blocksize) +
           " m=" + std::to_string(m) + " n=" + std::to_string(n) + (dead ? " dead-input" : "");
  }
};

// Every option the float32 sweeps support, cycled over shapes where groups
// start mid-block and span blocks, the last group and block are partial, n is
// not a multiple of the block, m is odd. `scale` multiplies m and n.
inline std::vector<SweepCase> sweep_cases(int64_t scale = 1) {
  // (m, n, group, blocksize)
  const int64_t shapes[][4] = {{37, 100, 16, 24}, {20, 77, 32, 128}, {33, 150, -1, 32}, {17, 90, 40, 32},
                               {25, 128, 128, 128}, {40, 131, 12, 64}, {29, 200, 64, 128}};
  const int bits_cycle[] = {2, 3, 4, 8, 6, 5, 7};
  struct Method { MethodKind kind; bool cae; CaeSource source; bool p1_original; double a1, a2; };
  const Method methods[] = {{MethodKind::Gptq, false, CaeSource::Xx, false, 0.25, 0.25},
                            {MethodKind::Gptaq, false, CaeSource::Xx, false, 0.25, 0.25},
                            {MethodKind::Gptq, true, CaeSource::Xx, false, 0.25, 0.25},
                            {MethodKind::Gptaq, true, CaeSource::Xx, false, 0.25, 1.0},
                            {MethodKind::Gptaq, false, CaeSource::Xx, true, 1.0, 0.25},
                            {MethodKind::Gptq, true, CaeSource::Xfx, false, 0.25, 0.25}};
  std::vector<SweepCase> out;
  int k = 0;
  for (int combo = 0; combo < 48; ++combo, ++k) {
    // Shape, method and bit width cycle with periods that do not lock onto
    // the option bits below, so every option meets every shape and method.
    const auto& s = shapes[k % 7];
    const Method& me = methods[(k / 7 + k) % 6];
    SweepCase c{s[0] * scale, s[1] * scale, QuantConfig{}, k % 5 == 2};
    c.cfg.method = me.kind;
    c.cfg.cae = me.cae;
    c.cfg.cae_source = me.source;
    c.cfg.p1_original = me.p1_original;
    c.cfg.gptaq_alpha = me.a1;
    c.cfg.cae_alpha = me.a2;
    c.cfg.bits = bits_cycle[(3 * k + k / 7) % 7];
    c.cfg.group = s[2] > 0 ? s[2] * scale : -1;
    c.cfg.blocksize = s[3];
    c.cfg.act_order = combo & 1;
    c.cfg.static_groups = ((combo >> 1) & 1) && c.cfg.group > 0;
    c.cfg.sym = (combo >> 2) & 1;
    c.cfg.clip = (combo >> 3) & 1 ? ClipSearch::Mse : ClipSearch::MinMax;
    c.cfg.grid_style = (combo >> 4) & 1 ? GridStyle::Gptq : GridStyle::Quarot;
    c.cfg.checkpoint_format = k % 3 == 1 ? CheckpointFormat::GptqV2 : CheckpointFormat::Gptq;
    out.push_back(c);
  }
  return out;
}

}  // namespace streamq::test
