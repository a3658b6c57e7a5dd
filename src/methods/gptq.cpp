// The blocked GPTQ sweep and RTN.
#include "src/methods/gptq.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>
#include <type_traits>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "src/methods/compensation.h"
#include "src/methods/grid.h"
#include "src/methods/two_stage.h"

namespace streamq {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The float64 methods pass host vectors to backend ops: that needs a backend
// whose memory is the host's. A device runs gptq_sweep_on_backend
// (sweep_problem.h) instead.
void require_host_backend(const Backend& be, const char* who) {
  if (!be.host_addressable())
    throw InternalError(std::string(who) + ": runs on host memory, backend " + be.name() +
                        " is not host-addressable (use gptq_sweep_on_backend)");
}

QuantResult make_result(int64_t m, int64_t n, const QuantConfig& cfg) {
  QuantResult r;
  r.rows = m;
  r.cols = n;
  r.bits = cfg.bits;
  r.group = cfg.group;
  r.ngroups = cfg.group > 0 ? (n + cfg.group - 1) / cfg.group : 1;
  r.dequant.assign(static_cast<size_t>(m * n), 0.0);
  r.codes.assign(static_cast<size_t>(m * n), 0);
  r.scales.assign(static_cast<size_t>(r.ngroups * m), 0.0);
  r.zeros.assign(static_cast<size_t>(r.ngroups * m), 0.0);
  r.g_idx.assign(static_cast<size_t>(n), 0);
  r.perm.resize(static_cast<size_t>(n));
  std::iota(r.perm.begin(), r.perm.end(), 0);
  return r;
}

void store_params(QuantResult& r, int64_t group, int64_t row, const GridParams& p) {
  r.scales[static_cast<size_t>(group * r.rows + row)] = p.scale;
  r.zeros[static_cast<size_t>(group * r.rows + row)] = p.zero;
}

GridParams load_params(const QuantResult& r, int64_t group, int64_t row) {
  return {r.scales[static_cast<size_t>(group * r.rows + row)],
          r.zeros[static_cast<size_t>(group * r.rows + row)]};
}

}  // namespace

std::vector<int32_t> processing_order(const std::vector<double>& h, int64_t n, bool act_order) {
  std::vector<int32_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) {
      return h[static_cast<size_t>(a) * n + a] > h[static_cast<size_t>(b) * n + b];
    });
  }
  return perm;
}

QuantResult rtn_quantize(const double* w, int64_t m, int64_t n, const QuantConfig& cfg) {
  if (cfg.two_stage()) throw InternalError("rtn_quantize: two-stage grids need H; use two_stage_rtn_quantize");
  QuantResult r = make_result(m, n, cfg);
  const Grid grid(cfg);
  const int64_t g = cfg.group > 0 ? cfg.group : n;
  tbb::parallel_for(int64_t{0}, m, [&](int64_t row) {
    for (int64_t gi = 0; gi * g < n; ++gi) {
      const int64_t c0 = gi * g, c1 = std::min(n, c0 + g);
      const GridParams p = grid.fit(w + row * n + c0, c1 - c0);
      store_params(r, gi, row, p);
      for (int64_t c = c0; c < c1; ++c) {
        const int32_t code = grid.code(w[row * n + c], p);
        r.codes[static_cast<size_t>(row * n + c)] = static_cast<uint8_t>(code);
        r.dequant[static_cast<size_t>(row * n + c)] = grid.dequant(code, p);
      }
    }
  });
  for (int64_t c = 0; c < n; ++c) r.g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(c / g);
  return r;
}

namespace {

// The unfolded P = alpha * triu(D U^T, 1) U on the host as two full GEMMs:
// t = triu(D U^T, 1), then p = alpha * t U.
void full_compensation(Backend& be, const double* d, const double* u, double* t, double* p, int64_t n,
                       double alpha) {
  be.gemm(Trans::N, Trans::T, n, n, n, 1.0, d, n, u, n, 0.0, t, n);
  for (int64_t a = 0; a < n; ++a)  // keep the strict upper triangle
    std::fill(t + a * n, t + a * n + a + 1, 0.0);
  be.gemm(Trans::N, Trans::N, n, n, n, alpha, t, n, u, n, 0.0, p, n);
}

// Host float64 matrices staged into `be`'s memory as T and back. Float32
// staging converts a panel at a time (the host never holds a float copy of
// a whole matrix) and waits for each panel's copy, whose source it reuses.
constexpr size_t kStagePanel = size_t{1} << 22;  // elements: 16 MiB of float
template <typename T>
Buffer<T> stage_in(Backend& be, const std::vector<double>& v, const std::string& what) {
  Buffer<T> b = be.alloc<T>(v.size(), what);
  if constexpr (std::is_same_v<T, double>) {
    be.upload(b, v.data(), v.size());
  } else {
    std::vector<T> panel(std::min(v.size(), kStagePanel));
    for (size_t at = 0; at < v.size(); at += panel.size()) {
      const size_t count = std::min(panel.size(), v.size() - at);
      std::copy(v.begin() + at, v.begin() + at + count, panel.begin());
      be.upload(b, panel.data(), count, at);
      be.synchronize();
    }
  }
  return b;
}
template <typename T>
void stage_out(Backend& be, const Buffer<T>& b, std::vector<double>& v) {
  v.resize(b.size());
  if constexpr (std::is_same_v<T, double>) {
    be.download(v.data(), b, b.size());
    be.synchronize();
  } else {
    std::vector<T> panel(std::min(v.size(), kStagePanel));
    for (size_t at = 0; at < v.size(); at += panel.size()) {
      const size_t count = std::min(panel.size(), v.size() - at);
      be.download(panel.data(), b, count, at);
      be.synchronize();
      std::copy(panel.begin(), panel.begin() + count, v.begin() + at);
    }
  }
}

// The factor's O(n^3) work runs on `be`: in float64 on the host directly on
// the vectors; otherwise (a device, or float32) on buffers staged from and
// back to them, the same ops on the same inputs.
template <typename T>
bool inverse_upper_factor_staged(Backend& be, std::vector<double>& u, int64_t n) {
  Buffer<T> d = stage_in<T>(be, u, std::string("factor: damped H, then U [n, n] ") + (sizeof(T) == 8 ? "float64" : "float32"));
  if (!be.inverse_upper_factor(d.data(), n)) return false;  // synchronizes: d can go
  stage_out(be, d, u);
  return true;
}
bool inverse_upper_factor_on(Backend& be, std::vector<double>& u, int64_t n, FactorPrecision precision) {
  if (precision == FactorPrecision::F32) return inverse_upper_factor_staged<float>(be, u, n);
  if (be.host_addressable()) return be.inverse_upper_factor(u.data(), n);
  return inverse_upper_factor_staged<double>(be, u, n);
}

// P = alpha * triu(D U^T, 1) U for D in processing order ([n, n]), staged
// into be's memory as T: the triangular products (compensation.h).
template <typename T>
std::vector<double> compensation_staged(Backend& be, const std::vector<double>& d, const std::vector<double>& u,
                                        int64_t n, double alpha) {
  const std::string type = sizeof(T) == 8 ? " float64" : " float32";
  // At most three [n, n] buffers live at once: D goes before P comes.
  Buffer<T> du = stage_in<T>(be, u, "factor: U [n, n]" + type);
  Buffer<T> dt = be.alloc<T>(u.size(), "factor: triu(D U^T, 1) [n, n]" + type);
  {
    Buffer<T> dd = stage_in<T>(be, d, "factor: D [n, n]" + type);
    compensation_t(be, dd.data(), du.data(), dt.data(), n);
    be.synchronize();  // dd's memory returns to the pool only once no queued op reads it
  }
  Buffer<T> dp = be.alloc<T>(u.size(), "factor: P [n, n]" + type);
  compensation_p(be, dt.data(), du.data(), dp.data(), n, static_cast<T>(alpha));
  std::vector<double> p;
  stage_out(be, dp, p);
  return p;
}

// P for the folded form (`full` false: the triangular products) or the
// unfolded P1/P2 the device sweep and the official variant read (`full`: on
// the host two full GEMMs, whose bytes the official variant's tables were
// taken with). Off the host, or in float32, the triangular products always:
// the same matrix up to summation order, at a sixth of the FLOPs.
std::vector<double> compensation_on(Backend& be, const std::vector<double>& d, const std::vector<double>& u,
                                    int64_t n, double alpha, bool full, FactorPrecision precision) {
  if (precision == FactorPrecision::F32) return compensation_staged<float>(be, d, u, n, alpha);
  if (!be.host_addressable()) return compensation_staged<double>(be, d, u, n, alpha);
  std::vector<double> t(static_cast<size_t>(n * n)), p(static_cast<size_t>(n * n));
  if (full) {
    full_compensation(be, d.data(), u.data(), t.data(), p.data(), n, alpha);
  } else {
    compensation_t(be, d.data(), u.data(), t.data(), n);
    compensation_p(be, t.data(), u.data(), p.data(), n, alpha);
  }
  return p;
}

std::vector<double> permuted(const std::vector<double>& m, const std::vector<int32_t>& perm, int64_t n) {
  std::vector<double> out(m.size());
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) out[a * n + b] = m[perm[a] * n + perm[b]];
  return out;
}

}  // namespace

FactoredHessian factor_hessian(Backend& backend, const std::vector<double>& h_in,
                               const std::vector<double>* cross, int64_t n, const QuantConfig& cfg,
                               CompensationForm form, FactorPrecision precision) {
  cfg.validate();
  const auto t0 = std::chrono::steady_clock::now();
  FactoredHessian f;
  f.n = n;
  f.form = cfg.variant == Variant::Official ? CompensationForm::Unfolded : form;
  std::vector<double> h(h_in);
  f.dead.assign(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    if (h[static_cast<size_t>(i * n + i)] == 0.0) {
      h[static_cast<size_t>(i * n + i)] = 1.0;
      f.dead[static_cast<size_t>(i)] = 1;
      ++f.dead_inputs;
    }
  }
  f.perm = processing_order(h, n, cfg.act_order);
  if (cfg.act_order) h = permuted(h, f.perm, n);
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) mean_diag += h[static_cast<size_t>(i * n + i)];
  mean_diag /= static_cast<double>(n);
  bool factored = false;
  for (int attempt = 0; attempt <= cfg.max_damp_retries && !factored; ++attempt) {
    // Retries grow the damping tenfold from at least 0.1% of the mean diagonal.
    const double percdamp =
        attempt == 0 ? cfg.percdamp : std::max(cfg.percdamp, 1e-3) * std::pow(10.0, attempt);
    f.u = h;
    f.damp = percdamp * mean_diag;
    for (int64_t i = 0; i < n; ++i) f.u[static_cast<size_t>(i * n + i)] += f.damp;
    factored = inverse_upper_factor_on(backend, f.u, n, precision);
    if (!factored) f.cholesky_retries = attempt + 1;
  }
  if (!factored)
    throw InternalError("GPTQ: Hessian [" + std::to_string(n) + "x" + std::to_string(n) +
                        "] is not positive definite even with damping " + std::to_string(f.damp) +
                        " after " + std::to_string(cfg.max_damp_retries) + " retries");

  const bool gptaq = cfg.method == MethodKind::Gptaq;
  if ((gptaq || (cfg.cae && cfg.cae_source == CaeSource::Xfx)) && !cross)
    throw InternalError("factor_hessian: " + cfg.describe() + " needs the FP flow's cross term dX X^T");
  std::vector<double> d1;
  if (gptaq || (cfg.cae && cfg.cae_source == CaeSource::Xfx)) {
    d1 = *cross;
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = 0; b < n; ++b)
        if (f.dead[b]) d1[a * n + b] = 0.0;
    if (cfg.act_order) d1 = permuted(d1, f.perm, n);
  }
  if (f.form == CompensationForm::Folded) {
    // X X^T's share of P2 is implied by U (see CompensationForm): only D1's P is formed.
    if (!d1.empty()) f.pd = compensation_on(backend, d1, f.u, n, 1.0, false, precision);
  } else if (gptaq) {
    f.p1 = compensation_on(backend, d1, f.u, n, cfg.gptaq_alpha, true, precision);
  }
  if (cfg.cae && f.form == CompensationForm::Unfolded) {
    // D2 = X~ X^T = dX X^T + X X^T, or X X^T alone; h is undamped (dead fix applied).
    std::vector<double> d2 = h;
    if (cfg.method == MethodKind::Gptaq || cfg.cae_source == CaeSource::Xfx)
      for (size_t i = 0; i < d2.size(); ++i) d2[i] += d1[i];
    f.p2 = compensation_on(backend, d2, f.u, n, cfg.cae_alpha, true, precision);
  }
  if (cfg.two_stage()) {  // two-stage: stage 2's statistics
    f.h = h_in;
    if (cross) f.cross = *cross;
  }
  f.seconds = seconds_since(t0);
  return f;
}

QuantResult gptq_quantize(Backend& backend, const double* w_in, int64_t m, int64_t n,
                          const std::vector<double>& h, const QuantConfig& cfg, const std::vector<double>* cross) {
  return gptq_quantize(backend, w_in, m, n, factor_hessian(backend, h, cross, n, cfg), cfg);
}

QuantResult gptq_quantize(Backend& backend, const double* w_in, int64_t m, int64_t n,
                          const FactoredHessian& f, const QuantConfig& cfg) {
  cfg.validate();
  require_host_backend(backend, "gptq_quantize");
  if (f.n != n) throw InternalError("gptq_quantize: factored Hessian is " + std::to_string(f.n) + " wide, W has " +
                                    std::to_string(n) + " columns");
  QuantResult r = make_result(m, n, cfg);
  r.cholesky_retries = f.cholesky_retries;
  r.damp = f.damp;
  r.dead_inputs = f.dead_inputs;
  r.seconds_factor = f.seconds;
  r.perm = f.perm;
  const Grid grid(cfg);
  const bool per_channel = cfg.group < 0;
  const int64_t g = per_channel ? n : cfg.group;
  const std::vector<double>& u = f.u;
  const std::vector<int32_t>& perm = f.perm;
  const bool official = cfg.variant == Variant::Official;
  // The sweep's compensation terms: (P1, a_j) and (P2, c_j) unfolded, or
  // (PD, a'_j) folded with CAE's X X^T share in e'_j (see CompensationForm).
  const bool folded = f.form == CompensationForm::Folded;
  const bool gptaq = cfg.method == MethodKind::Gptaq;
  const bool cae_d1 = cfg.cae && (gptaq || cfg.cae_source == CaeSource::Xfx);  // D2 holds D1
  if (folded && official)
    throw InternalError("gptq_quantize: the official variant needs the unfolded P1/P2 (factor_hessian with its cfg)");
  if (folded && (gptaq || cae_d1) == f.pd.empty())
    throw InternalError("gptq_quantize: the folded factored Hessian does not match " + cfg.describe());
  const double* pa = folded ? (f.pd.empty() ? nullptr : f.pd.data()) : (f.p1.empty() ? nullptr : f.p1.data());
  const double* pc = folded || f.p2.empty() ? nullptr : f.p2.data();
  const bool has_p1 = pa != nullptr, has_p2 = pc != nullptr;
  const double a1 = cfg.gptaq_alpha, a2 = cfg.cae_alpha;
  // Two-stage grids are fixed before the sweep, in original column order, as static groups are.
  const bool two_stage = cfg.two_stage();
  const bool fixed_groups = cfg.static_groups || two_stage;
  if (two_stage && static_cast<int64_t>(f.h.size()) != n * n)
    throw InternalError("gptq_quantize: two-stage needs the undamped H kept by factor_hessian with a two-stage config");

  std::vector<double> w(w_in, w_in + m * n);
  // Per-channel grids come from the weights before dead inputs are zeroed
  // (as GPTQ's code does); static-group grids from the weights after it.
  std::vector<GridParams> row_params;
  if (per_channel && !two_stage) {
    row_params.resize(static_cast<size_t>(m));
    tbb::parallel_for(int64_t{0}, m, [&](int64_t row) { row_params[row] = grid.fit(&w[row * n], n); });
  }
  for (int64_t i = 0; i < n; ++i)
    if (f.dead[static_cast<size_t>(i)])
      for (int64_t row = 0; row < m; ++row) w[static_cast<size_t>(row * n + i)] = 0.0;
  // Two-stage: stage 1's grids (after dead inputs are zeroed, also per
  // channel) and stage 2's target, the weights before any compensation.
  std::vector<double> w_target;
  if (two_stage) {
    w_target = w;
    two_stage_init_grids(w.data(), m, n, f.h, cfg, r);
    if (per_channel) {
      row_params.resize(static_cast<size_t>(m));
      for (int64_t row = 0; row < m; ++row) row_params[row] = load_params(r, 0, row);
    }
  } else if (cfg.static_groups) {
    tbb::parallel_for(int64_t{0}, m, [&](int64_t row) {
      for (int64_t gi = 0; gi < r.ngroups; ++gi) {
        const int64_t c0 = gi * g, c1 = std::min(n, c0 + g);
        store_params(r, gi, row, grid.fit(&w[row * n + c0], c1 - c0));
      }
    });
  }
  if (cfg.act_order) {
    std::vector<double> wp(w.size());
    for (int64_t row = 0; row < m; ++row)
      for (int64_t c = 0; c < n; ++c) wp[row * n + c] = w[row * n + perm[c]];
    w.swap(wp);
  }
  for (int64_t c = 0; c < n; ++c) {
    const int64_t orig = perm[c];
    r.g_idx[orig] = static_cast<int32_t>(per_channel ? 0 : (fixed_groups ? orig / g : c / g));
  }
  // W0: the original weights (dead inputs zeroed), processing order (CAE, p1-original).
  std::vector<double> w0;
  if (has_p2 || cfg.p1_original || (folded && cfg.cae)) w0 = w;
  const auto t1 = std::chrono::steady_clock::now();

  // Sweep. Column j of a block updates every later column k by
  //   -e_j U[j,k] + a_j P1[j,k] + c_j P2[j,k],
  // e_j = (w_j - q_j) / U[j,j], a_j = w_j (or w0_j with --p1-original),
  // c_j = w0_j - w_j; in the folded form (exact variant) the same update is
  // -e'_j U[j,k] + a'_j PD[j,k] (see CompensationForm). Within a block each
  // row is independent (its grid, its coefficients, its in-block updates), so
  // rows run in parallel; the cross-block update is one GEMM per term.
  std::vector<double> qp(static_cast<size_t>(m * n));  // dequantized, processing order
  std::vector<uint8_t> codes_p(static_cast<size_t>(m * n));
  const int64_t bs = cfg.blocksize;
  std::vector<double> err(static_cast<size_t>(m * bs)), coef_a, coef_c;
  if (has_p1) coef_a.resize(static_cast<size_t>(m * bs));
  if (has_p2) coef_c.resize(static_cast<size_t>(m * bs));
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(n, i1 + bs), b = i2 - i1;
    tbb::parallel_for(int64_t{0}, m, [&](int64_t row) {
      double* wr = &w[row * n];
      double* er = &err[row * b];
      double* ar = has_p1 ? &coef_a[row * b] : nullptr;
      double* cr = has_p2 ? &coef_c[row * b] : nullptr;
      const double* w0r = w0.empty() ? nullptr : &w0[row * n];
      // Official grids see the weights as they were when the block started.
      std::vector<double> start;
      if (official && !per_channel && !fixed_groups)
        start.assign(wr + i1, wr + std::min(n, i2 + g));
      std::vector<double> cur, xs(static_cast<size_t>(b));
      GridParams p{};
      for (int64_t j = 0; j < b; ++j) {
        const int64_t col = i1 + j;
        if (per_channel) {
          p = row_params[row];
        } else if (fixed_groups) {
          p = load_params(r, perm[col] / g, row);
        } else {
          if (col % g == 0) {
            const int64_t ce = std::min(n, col + g);
            if (official) {
              cur.assign(start.begin() + (col - i1), start.begin() + (ce - i1));
            } else {
              // Current values: columns past this block still owe the updates
              // of this block's columns before j.
              cur.assign(wr + col, wr + ce);
              for (int64_t c = std::max(i2, col); c < ce; ++c)
                for (int64_t jj = 0; jj < j; ++jj) {
                  const int64_t src = (i1 + jj) * n + c;
                  double d = -er[jj] * u[src];
                  if (ar) d += ar[jj] * pa[src];
                  if (cr) d += cr[jj] * pc[src];
                  cur[c - col] += d;
                }
            }
            store_params(r, col / g, row, grid.fit(cur.data(), ce - col));
          }
          p = load_params(r, col / g, row);
        }
        const double x = wr[col];
        xs[j] = x;
        const int32_t code = grid.code(x, p);
        const double q = grid.dequant(code, p);
        qp[row * n + col] = q;
        codes_p[row * n + col] = static_cast<uint8_t>(code);
        double e = (x - q) / u[col * n + col], a = 0.0, c = 0.0;
        if (folded) {
          const double cc = cfg.cae ? w0r[col] - x : 0.0;
          if (cfg.cae) e = (x - q + a2 * cc) / u[col * n + col];
          if (ar) a = (gptaq ? a1 * (cfg.p1_original ? w0r[col] : x) : 0.0) + (cae_d1 ? a2 * cc : 0.0);
        } else {
          a = ar ? (cfg.p1_original ? w0r[col] : x) : 0.0;
          c = cr ? w0r[col] - x : 0.0;
        }
        er[j] = e;
        const double* ur = &u[col * n];
        const double* p1r = ar ? &pa[col * n] : nullptr;
        const double* p2r = cr ? &pc[col * n] : nullptr;
        for (int64_t k = col + 1; k < i2; ++k) {
          double d = -e * ur[k];
          if (p1r) d += a * p1r[k];
          if (p2r) d += c * p2r[k];
          wr[k] += d;
        }
        if (ar) ar[j] = a;
        if (cr) cr[j] = c;
        if (official && (ar || cr) && !cfg.p1_original) {
          // The released code carries W1's final value across the block
          // boundary: the quantized value x - e U[j,j] for GPTAQ (and CAE at
          // 2 bits); for CAE at other widths x clamped to the range of the
          // grid active at the end of the block (set after this loop).
          const double carried = x - e * u[col * n + col];
          if (ar) ar[j] = carried;
          if (cr) cr[j] = w0r[col] - carried;
        }
      }
      if (official && cr && cfg.bits != 2) {
        const double lo = p.scale * (0 - p.zero), hi = p.scale * (grid.maxq() - p.zero);
        for (int64_t j = 0; j < b; ++j) {
          const double carried = std::clamp(xs[j], std::min(lo, hi), std::max(lo, hi));
          if (ar && !cfg.p1_original) ar[j] = carried;
          cr[j] = w0r[i1 + j] - carried;
        }
      }
    });
    if (i2 < n) {
      backend.gemm(Trans::N, Trans::N, m, n - i2, b, -1.0, err.data(), b, &u[i1 * n + i2], n, 1.0, &w[i2], n);
      if (has_p1)
        backend.gemm(Trans::N, Trans::N, m, n - i2, b, 1.0, coef_a.data(), b, &pa[i1 * n + i2], n, 1.0, &w[i2], n);
      if (has_p2)
        backend.gemm(Trans::N, Trans::N, m, n - i2, b, 1.0, coef_c.data(), b, &pc[i1 * n + i2], n, 1.0, &w[i2], n);
    }
  }
  r.seconds_sweep = seconds_since(t1);
  // Working set of this linear at the sweep's peak (float64): the shared
  // factor and compensation matrices, W, W0, the processing-order results, the
  // per-block coefficient panels, plus the result itself.
  r.working_bytes = f.bytes() + 8 * (w.size() + w0.size() + qp.size() + err.size() + coef_a.size() + coef_c.size()) +
                    codes_p.size() + 8 * r.dequant.size() + r.codes.size();

  for (int64_t row = 0; row < m; ++row) {
    for (int64_t c = 0; c < n; ++c) {
      const double q = qp[row * n + c];
      if (!std::isfinite(q))
        throw InternalError("GPTQ produced a non-finite weight at row " + std::to_string(row) +
                            ", column " + std::to_string(perm[c]));
      r.dequant[row * n + perm[c]] = q;
      r.codes[row * n + perm[c]] = codes_p[row * n + c];
    }
  }
  if (per_channel)
    for (int64_t row = 0; row < m; ++row) store_params(r, 0, row, row_params[row]);
  if (two_stage) two_stage_refine_scales(backend, w_target.data(), f.h, f.cross.empty() ? nullptr : &f.cross, cfg, r);
  return r;
}

double layer_objective(Backend& backend, const double* w, const QuantResult& r,
                       const std::vector<double>& xx_sum, int64_t tokens) {
  require_host_backend(backend, "layer_objective");
  const int64_t m = r.rows, n = r.cols;
  std::vector<double> d(static_cast<size_t>(m * n)), dh(static_cast<size_t>(m * n));
  for (size_t i = 0; i < d.size(); ++i) d[i] = w[i] - r.dequant[i];
  backend.gemm(Trans::N, Trans::N, m, n, n, 1.0, d.data(), n, xx_sum.data(), n, 0.0, dh.data(), n);
  double total = 0;  // fixed summation order: deterministic
  for (size_t i = 0; i < d.size(); ++i) total += d[i] * dh[i];
  return tokens > 0 ? total / static_cast<double>(tokens) : total;
}

}  // namespace streamq
