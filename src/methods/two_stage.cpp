// Two-stage group scales: the H-weighted stage-1 grid search and the stage-2
// coordinate descent on the scales (see two_stage.h).
#include "src/methods/two_stage.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "src/methods/gptq.h"
#include "src/methods/grid.h"

namespace streamq {
namespace {

// One group's stage-1 quadratic form: its diagonal block of H, dense
// ([len, len], row-major) or, per channel, only its diagonal. The full
// n x n form per channel would cost O(n^2) per candidate and row (O(m n^2)
// per candidate, ~100 candidates: far more than the GPTQ sweep itself).
struct GroupBlock {
  int64_t c0 = 0, len = 0;
  bool diag = false;
  std::vector<double> h;

  void multiply(const double* x, double* y) const {  // y = H_gg x
    for (int64_t a = 0; a < len; ++a) {
      if (diag) {
        y[a] = h[a] * x[a];
        continue;
      }
      double s = 0;
      for (int64_t b = 0; b < len; ++b) s += h[a * len + b] * x[b];
      y[a] = s;
    }
  }
  void add_column(int64_t k, double delta, double* y) const {  // y += delta * H_gg[:, k]
    if (diag) {
      y[k] += delta * h[k];
      return;
    }
    for (int64_t a = 0; a < len; ++a) y[a] += delta * h[k * len + a];  // H symmetric: column k = row k
  }
};

// The stage-1 candidates, beta = 1 (min-max) first so that it wins ties.
// Below 1 (clipping the range) is where H-weighting usually finds gains, so
// the default search is dense there: 0.005 steps down to 0.5 (100 candidates,
// GPTQ's MSE search uses 0.01 steps down to 0.2 on an unweighted loss); a
// few candidates above 1 (to 1.2) let a group move its extreme values onto
// a grid point when that is what H rewards, at little cost (see the
// incremental evaluation below).
std::vector<double> candidate_betas(const QuantConfig& cfg) {
  std::vector<double> betas{1.0};
  // 1e-9: absorb the rounding of i * step so that the end points are included.
  for (int i = 1; 1.0 - i * cfg.scale_beta_step >= cfg.scale_beta_min - 1e-9; ++i)
    betas.push_back(1.0 - i * cfg.scale_beta_step);
  for (int i = 1; 1.0 + i * cfg.scale_beta_step <= cfg.scale_beta_max + 1e-9; ++i)
    betas.push_back(1.0 + i * cfg.scale_beta_step);
  return betas;
}

// Scratch of one row's stage-1 search, reused across its groups.
struct SearchScratch {
  std::vector<double> c, cn, hc, hw;
  explicit SearchScratch(int64_t g) : c(g), cn(g), hc(g), hw(g) {}
};

// The candidate grid with the least (s c - w)^T H_gg (s c - w) for one row's
// group wg[0..len). Consecutive candidates differ in a few codes only, so
// H_gg c is updated column by column (O(len) per changed code) and rebuilt
// (O(len^2)) only when many codes change, e.g. when the zero point moves.
GridParams search_group(const GroupBlock& b, const double* wg, const std::vector<double>& betas, const Grid& fitter,
                        SearchScratch& s) {
  const int64_t len = b.len;
  double xmin = 0, xmax = 0;
  for (int64_t k = 0; k < len; ++k) {
    xmin = std::min(xmin, wg[k]);
    xmax = std::max(xmax, wg[k]);
  }
  b.multiply(wg, s.hw.data());
  GridParams best{};
  double best_loss = 0;
  for (size_t i = 0; i < betas.size(); ++i) {
    // fit() on the two end points is the min-max grid of the range
    // beta * [xmin, xmax] in the configured style (symmetry, 1e-5 floor,
    // zero point round(-beta xmin / s) for asymmetric grids), exactly the
    // grids GPTQ's MSE clip search tries.
    const double ends[2] = {betas[i] * xmin, betas[i] * xmax};
    const GridParams p = fitter.fit(ends, 2);
    int64_t changed = 0;
    for (int64_t k = 0; k < len; ++k) {
      s.cn[k] = fitter.code(wg[k], p) - p.zero;
      changed += s.cn[k] != s.c[k];
    }
    if (i == 0 || 2 * changed >= len) {
      s.c = s.cn;
      b.multiply(s.c.data(), s.hc.data());
    } else {
      for (int64_t k = 0; k < len; ++k)
        if (s.cn[k] != s.c[k]) {
          b.add_column(k, s.cn[k] - s.c[k], s.hc.data());
          s.c[k] = s.cn[k];
        }
    }
    // (s c - w)^T H (s c - w) summed as e . (s Hc - Hw): small residuals, no
    // cancellation between s^2 c'Hc and w'Hw.
    double loss = 0;
    for (int64_t k = 0; k < len; ++k) loss += (p.scale * s.c[k] - wg[k]) * (p.scale * s.hc[k] - s.hw[k]);
    if (i == 0 || loss < best_loss) {
      best_loss = loss;
      best = p;
    }
  }
  return best;
}

void check_layout(const QuantResult& r, int64_t m, int64_t n, const std::vector<double>& h, const char* who) {
  if (r.rows != m || r.cols != n || static_cast<int64_t>(r.scales.size()) != r.ngroups * m ||
      static_cast<int64_t>(r.dequant.size()) != m * n)
    throw InternalError(std::string(who) + ": result layout does not match W [" + std::to_string(m) + ", " +
                        std::to_string(n) + "]");
  if (static_cast<int64_t>(h.size()) != n * n)
    throw InternalError(std::string(who) + ": H has " + std::to_string(h.size()) + " entries, expected " +
                        std::to_string(n) + "^2 (two-stage needs the undamped Hessian)");
}

}  // namespace

void two_stage_init_grids(const double* w, int64_t m, int64_t n, const std::vector<double>& h,
                          const QuantConfig& cfg, QuantResult& r) {
  cfg.validate();
  check_layout(r, m, n, h, "two-stage stage 1");
  const bool per_channel = cfg.group < 0;
  const int64_t g = per_channel ? n : cfg.group;
  if ((n + g - 1) / g != r.ngroups)
    throw InternalError("two-stage stage 1: " + std::to_string(r.ngroups) + " groups in the result, " +
                        std::to_string((n + g - 1) / g) + " from --group " + std::to_string(cfg.group));
  std::vector<GroupBlock> blocks(static_cast<size_t>(r.ngroups));
  for (int64_t gi = 0; gi < r.ngroups; ++gi) {
    GroupBlock& b = blocks[gi];
    b.c0 = gi * g;
    b.len = std::min(n, b.c0 + g) - b.c0;
    b.diag = per_channel;
    b.h.resize(static_cast<size_t>(b.diag ? b.len : b.len * b.len));
    for (int64_t a = 0; a < b.len; ++a) {
      if (b.diag) {
        b.h[a] = h[(b.c0 + a) * n + b.c0 + a];
        continue;
      }
      for (int64_t c = 0; c < b.len; ++c) b.h[a * b.len + c] = h[(b.c0 + a) * n + b.c0 + c];
    }
  }
  QuantConfig minmax = cfg;
  minmax.clip = ClipSearch::MinMax;
  const Grid fitter(minmax);
  const std::vector<double> betas = candidate_betas(cfg);
  tbb::parallel_for(int64_t{0}, m, [&](int64_t row) {
    SearchScratch s(g);
    for (int64_t gi = 0; gi < r.ngroups; ++gi) {
      const GroupBlock& b = blocks[gi];
      const GridParams p = search_group(b, w + row * n + b.c0, betas, fitter, s);
      r.scales[gi * m + row] = p.scale;
      r.zeros[gi * m + row] = p.zero;
    }
  });
}

// Stage 2, derived in our convention. Per row, with X~ = X + dX:
//   L(s) = ||w^T X~ - q^T X||^2 = ||(q - w)^T X - w^T dX||^2
//        = (q-w)^T H (q-w) - 2 w^T C (q-w) + const,   C = dX X^T (X dX^T = C^T).
// q = s (.)_g c (c = code - zero, fixed), so dq/ds_i = c_i on group i and
//   dL/ds_i = 2 c_i^T [H (q - w)]_i - 2 c_i^T [C^T w]_i.
// Moving s_i by delta moves q by delta c_i and the gradient by
// 2 delta c_i^T H_ii c_i, so the exact minimizer along s_i is
//   s_i += ( c_i^T [H (w - q)]_i + c_i^T [C^T w]_i ) / ( c_i^T H_ii c_i ).
// The paper's Eq. 9 with R = E[(X - X~) X^T] = -C: its "- w^T R_i w_int,i" is
// our "+ (w^T C)_i c_i".
//
// Rows are independent, so the descent runs over groups in lockstep across
// rows: per group, every row takes its step (in parallel), then one GEMM
// V -= dQ_i H_{i,:} (m x g x n) brings every row's v = H (w - q) up to date.
// Each row sees exactly the sequential descent; the cost is m n^2 per pass,
// all in GEMMs (the first v, u = C^T w and the curvatures too).
void two_stage_refine_scales(Backend& backend, const double* w, const std::vector<double>& h,
                             const std::vector<double>* cross, const QuantConfig& cfg, QuantResult& r,
                             const ScaleStepHook* hook) {
  const int64_t m = r.rows, n = r.cols;
  check_layout(r, m, n, h, "two-stage stage 2");
  if (cross && static_cast<int64_t>(cross->size()) != n * n)
    throw InternalError("two-stage stage 2: cross term has " + std::to_string(cross->size()) + " entries, expected " +
                        std::to_string(n) + "^2");
  // Each group's columns: contiguous [c0, c0 + len) in every result streamq
  // makes (g_idx = col / g); checked, since the GEMMs below rely on it.
  std::vector<int64_t> c0(static_cast<size_t>(r.ngroups), -1), len(static_cast<size_t>(r.ngroups), 0);
  for (int64_t c = 0; c < n; ++c) {
    const int32_t gi = r.g_idx[c];
    if (gi < 0 || gi >= r.ngroups || (len[gi] > 0 && c0[gi] + len[gi] != c))
      throw InternalError("two-stage stage 2: g_idx[" + std::to_string(c) + "] = " + std::to_string(gi) +
                          ": groups must be contiguous column ranges in [0, " + std::to_string(r.ngroups) + ")");
    if (len[gi]++ == 0) c0[gi] = c;
  }
  std::vector<double> cm(static_cast<size_t>(m * n)), v(static_cast<size_t>(m * n)), u;
  for (int64_t row = 0; row < m; ++row)
    for (int64_t k = 0; k < n; ++k) cm[row * n + k] = r.codes[row * n + k] - r.zeros[r.g_idx[k] * m + row];
  {
    std::vector<double> d(static_cast<size_t>(m * n));
    for (size_t i = 0; i < d.size(); ++i) d[i] = w[i] - r.dequant[i];
    // Row-major (W - Q) H: row i is (H (w_i - q_i))^T, H being symmetric.
    backend.gemm(Trans::N, Trans::N, m, n, n, 1.0, d.data(), n, h.data(), n, 0.0, v.data(), n);
  }
  if (cross) {
    u.resize(static_cast<size_t>(m * n));
    backend.gemm(Trans::N, Trans::N, m, n, n, 1.0, w, n, cross->data(), n, 0.0, u.data(), n);  // rows w^T C
  }
  // Curvatures c_i^T H_ii c_i ([ngroups, m]): fixed with the codes.
  std::vector<double> den(static_cast<size_t>(r.ngroups * m)), dq;
  for (int64_t gi = 0; gi < r.ngroups; ++gi) {
    std::vector<double> t(static_cast<size_t>(m * len[gi]));
    backend.gemm(Trans::N, Trans::N, m, len[gi], len[gi], 1.0, &cm[c0[gi]], n, &h[c0[gi] * n + c0[gi]], n, 0.0,
                 t.data(), len[gi]);
    for (int64_t row = 0; row < m; ++row) {
      double s = 0;
      for (int64_t a = 0; a < len[gi]; ++a) s += cm[row * n + c0[gi] + a] * t[row * len[gi] + a];
      den[gi * m + row] = s;
    }
  }
  if (hook)
    for (int64_t row = 0; row < m; ++row) (*hook)(row, &r.dequant[row * n]);
  for (int it = 0; it < cfg.scale_refine_iters; ++it) {
    for (int64_t gi = 0; gi < r.ngroups; ++gi) {
      const int64_t g0 = c0[gi], gl = len[gi];
      dq.assign(static_cast<size_t>(m * gl), 0.0);
      // One coordinate step of one row; a step not taken returns early.
      const auto step = [&](int64_t row) {
        // Zero curvature: every code of the group at its zero point, or only
        // dead inputs; the scale does not change the objective.
        if (!(den[gi * m + row] > 0)) return;
        const double* cr = &cm[row * n + g0];
        const double* vr = &v[row * n + g0];
        const double* ur = u.empty() ? nullptr : &u[row * n + g0];
        double num = 0;
        for (int64_t a = 0; a < gl; ++a) num += cr[a] * (vr[a] + (ur ? ur[a] : 0.0));
        double& scale = r.scales[gi * m + row];
        // The step lands on the nearest fp16 scale (what a GPTQ checkpoint
        // stores), so q below is exactly what a loader dequantizes; a step
        // that would leave the positive fp16 range is not taken (the scale is
        // kept, a valid, if not optimal, point of the descent).
        const double target = scale + num / den[gi * m + row];
        if (!(target > 0) || !std::isfinite(target)) return;
        scale = round_scale_fp16(target);
        double* q = &r.dequant[row * n + g0];
        for (int64_t a = 0; a < gl; ++a) {
          const double qn = scale * cr[a];  // q stays exactly s * c
          dq[row * gl + a] = qn - q[a];
          q[a] = qn;
        }
      };
      tbb::parallel_for(int64_t{0}, m, [&](int64_t row) {
        step(row);
        if (hook) (*hook)(row, &r.dequant[row * n]);  // taken or not: the count is exact
      });
      const bool last = it + 1 == cfg.scale_refine_iters && gi + 1 == r.ngroups;
      if (!last)  // v = H (w - q) loses H[:, i] dq_i; H symmetric, so rows g0.. of H
        backend.gemm(Trans::N, Trans::N, m, n, gl, -1.0, dq.data(), gl, &h[g0 * n], n, 1.0, v.data(), n);
    }
  }
}

QuantResult two_stage_rtn_quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                                   const std::vector<double>& h, const std::vector<double>* cross,
                                   const QuantConfig& cfg) {
  cfg.validate();
  if (static_cast<int64_t>(h.size()) != n * n)
    throw InternalError("two-stage RTN: H has " + std::to_string(h.size()) + " entries, expected " +
                        std::to_string(n) + "^2");
  std::vector<double> wz(w, w + m * n);
  int64_t dead = 0;
  for (int64_t c = 0; c < n; ++c) {
    if (h[c * n + c] != 0.0) continue;
    ++dead;
    for (int64_t row = 0; row < m; ++row) wz[row * n + c] = 0.0;
  }
  // Plain RTN gives the result's layout (and g_idx = col / g); its grids and
  // codes are then replaced by stage 1's.
  QuantConfig minmax = cfg;
  minmax.clip = ClipSearch::MinMax;
  QuantResult r = rtn_quantize(wz.data(), m, n, minmax);
  r.dead_inputs = dead;
  two_stage_init_grids(wz.data(), m, n, h, cfg, r);
  const Grid grid(cfg);
  tbb::parallel_for(int64_t{0}, m, [&](int64_t row) {
    for (int64_t c = 0; c < n; ++c) {
      const GridParams p{r.scales[r.g_idx[c] * m + row], r.zeros[r.g_idx[c] * m + row]};
      const int32_t code = grid.code(wz[row * n + c], p);
      r.codes[row * n + c] = static_cast<uint8_t>(code);
      r.dequant[row * n + c] = grid.dequant(code, p);
    }
  });
  two_stage_refine_scales(backend, wz.data(), h, cross, cfg, r);
  return r;
}

}  // namespace streamq
