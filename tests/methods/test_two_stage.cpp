// Two-stage group scales: stage 1 against a brute-force float64 search and
// min-max, stage 2 against a naive coordinate descent that differentiates the
// objective ||W X~ - Q X||^2 straight from X and X~, its monotonicity at
// every step, and end to end with every method on fresh random layers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "src/methods/gptq.h"
#include "src/methods/grid.h"
#include "src/methods/linear_stats.h"
#include "src/methods/method.h"
#include "src/methods/two_stage.h"
#include "tests/support/naive_reference.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using test::NaiveLayer;

// Fast and naive evaluations of one quadratic form differ only in summation
// order (and stage 1's incremental H c updates): ~1e-15 relative per sum,
// a few hundred terms; 1e-12 leaves a wide margin and still fails any real
// difference in which grid wins.
constexpr double kFormRelTol = 1e-12;
// Stage 2, fast (H, C, incremental v) vs naive (tokens): float64 rounding
// over a few passes, amplified by the conditioning of the per-group steps.
constexpr double kScaleRelTol = 1e-10;
// Monotonicity: an exact line minimization cannot raise the objective; the
// direct evaluation from X, X~ carries ~1e-15 relative rounding.
constexpr double kMonotoneRelTol = 1e-12;

// Dead inputs zeroed, as every sweep does before quantizing.
std::vector<double> live_weights(const NaiveLayer& L, const std::vector<double>& h) {
  std::vector<double> w = L.w;
  for (int64_t c = 0; c < L.n; ++c)
    if (h[c * L.n + c] == 0.0)
      for (int64_t r = 0; r < L.m; ++r) w[r * L.n + c] = 0.0;
  return w;
}

// ||w_row^T X~ - q_row^T X||^2 for one row, straight from the tokens.
double row_objective(const NaiveLayer& L, const double* w_row, const double* q_row) {
  double total = 0;
  for (int64_t t = 0; t < L.tokens; ++t) {
    double y = 0;
    for (int64_t i = 0; i < L.n; ++i) y += w_row[i] * L.x_fp[i * L.tokens + t] - q_row[i] * L.x[i * L.tokens + t];
    total += y * y;
  }
  return total;
}

double objective(const NaiveLayer& L, const std::vector<double>& w, const std::vector<double>& q) {
  double total = 0;
  for (int64_t r = 0; r < L.m; ++r) total += row_objective(L, &w[r * L.n], &q[r * L.n]);
  return total;
}

// (s c - w)^T H_gg (s c - w) over columns [c0, c0 + len) of one row, dense or
// diagonal only (stage 1's per-channel form).
double group_form(const std::vector<double>& h, int64_t n, int64_t c0, int64_t len, bool diag, const double* w,
                  const Grid& grid, const GridParams& p) {
  std::vector<double> e(len);
  for (int64_t k = 0; k < len; ++k) e[k] = grid.quantize(w[c0 + k], p) - w[c0 + k];
  double s = 0;
  for (int64_t a = 0; a < len; ++a)
    for (int64_t b = 0; b < len; ++b)
      if (!diag || a == b) s += e[a] * h[(c0 + a) * n + c0 + b] * e[b];
  return s;
}

// Naive stage 2: each step rebuilds the residual r_t = q^T x_t - w^T x~_t
// over all tokens and takes the exact Newton step of the quadratic in s_i,
// rounded to fp16. The nearest fp16 value to a quadratic's minimizer is at
// least as good as the previous (fp16) scale, so monotonicity survives.
void naive_refine(const NaiveLayer& L, const std::vector<double>& w, QuantResult& r, int iters) {
  const int64_t m = L.m, n = L.n;
  for (int64_t row = 0; row < m; ++row) {
    std::vector<double> c(n);
    for (int64_t k = 0; k < n; ++k) c[k] = r.codes[row * n + k] - r.zeros[r.g_idx[k] * m + row];
    double* q = &r.dequant[row * n];
    for (int it = 0; it < iters; ++it)
      for (int64_t gi = 0; gi < r.ngroups; ++gi) {
        double g1 = 0, g2 = 0;
        for (int64_t t = 0; t < L.tokens; ++t) {
          double res = 0, dir = 0;
          for (int64_t i = 0; i < n; ++i) {
            res += q[i] * L.x[i * L.tokens + t] - w[row * n + i] * L.x_fp[i * L.tokens + t];
            if (r.g_idx[i] == gi) dir += c[i] * L.x[i * L.tokens + t];
          }
          g1 += res * dir;
          g2 += dir * dir;
        }
        if (!(g2 > 0)) continue;
        double& s = r.scales[gi * m + row];
        // Scales live on the fp16 grid: the step lands on the fp16 value
        // nearest the exact minimizer (and is not taken if that is <= 0).
        const double target = s - g1 / g2;
        if (!(target > 0)) continue;
        s = round_scale_fp16(target);
        for (int64_t i = 0; i < n; ++i)
          if (r.g_idx[i] == gi) q[i] = s * c[i];
      }
  }
}

QuantConfig two_stage_config(int bits, int64_t group, bool sym, GridStyle style, bool act_order, int iters) {
  QuantConfig cfg;
  cfg.bits = bits;
  cfg.group = group;
  cfg.sym = sym;
  cfg.grid_style = style;
  cfg.act_order = act_order;
  cfg.clip = ClipSearch::TwoStage;
  cfg.scale_refine_iters = iters;
  return cfg;
}

TEST(TwoStage, Stage1IsTheBestCandidateAndNeverWorseThanMinMax) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  int n_case = 0, improved = 0, compared = 0;
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t group : {int64_t{-1}, int64_t{8}, int64_t{16}, int64_t{24}}) {
      for (int opt = 0; opt < 4; ++opt) {
        const QuantConfig cfg = two_stage_config(bits, group, opt & 1, opt & 2 ? GridStyle::Gptq : GridStyle::Quarot,
                                                 false, 1);
        SCOPED_TRACE(cfg.describe());
        const NaiveLayer L = test::random_naive_layer(rng, 5, 40 + n_case % 7, n_case % 3 == 0, 0.0);
        ++n_case;
        const std::vector<double> h = L.h(), w = live_weights(L, h);
        QuantConfig minmax = cfg;
        minmax.clip = ClipSearch::MinMax;
        QuantResult r = rtn_quantize(w.data(), L.m, L.n, minmax);  // layout
        two_stage_init_grids(w.data(), L.m, L.n, h, cfg, r);
        const Grid grid(minmax);
        const int64_t g = group > 0 ? group : L.n;
        // The candidates, built independently of two_stage.cpp's loop.
        std::vector<double> betas;
        for (int i = 0; i <= 100; ++i) betas.push_back(1.0 - 0.005 * i);
        for (int i = 1; i <= 40; ++i) betas.push_back(1.0 + 0.005 * i);
        for (int64_t row = 0; row < L.m; ++row)
          for (int64_t gi = 0; gi * g < L.n; ++gi) {
            const int64_t c0 = gi * g, len = std::min(L.n, c0 + g) - c0;
            const double* wr = &w[row * L.n];
            const GridParams got{r.scales[gi * L.m + row], r.zeros[gi * L.m + row]};
            const double f_got = group_form(h, L.n, c0, len, group < 0, wr, grid, got);
            const double f_mm =
                group_form(h, L.n, c0, len, group < 0, wr, grid, grid.fit(wr + c0, len));
            double xmin = 0, xmax = 0, f_best = f_mm;
            for (int64_t k = 0; k < len; ++k) {
              xmin = std::min(xmin, wr[c0 + k]);
              xmax = std::max(xmax, wr[c0 + k]);
            }
            for (double b : betas) {
              const double ends[2] = {b * xmin, b * xmax};
              f_best = std::min(f_best, group_form(h, L.n, c0, len, group < 0, wr, grid, grid.fit(ends, 2)));
            }
            ASSERT_LE(f_got, f_mm * (1 + kFormRelTol)) << "row " << row << " group " << gi;
            ASSERT_LE(f_got, f_best * (1 + kFormRelTol)) << "row " << row << " group " << gi;
            ++compared;
            improved += f_got < f_mm * (1 - 1e-9);
          }
      }
    }
  }
  std::printf("stage 1 beat min-max on %d of %d (row, group) pairs\n", improved, compared);
  EXPECT_GT(improved * 4, compared);  // a search that never moves would pass the bounds above
}

// A sweep's result with stage-1 grids and no refinement, for stage 2 to start from.
QuantResult unrefined(Backend& be, const NaiveLayer& L, QuantConfig cfg, MethodKind method) {
  cfg.method = method;
  cfg.scale_refine_iters = 0;
  const std::vector<double> cross = L.cross();
  return gptq_quantize(be, L.w.data(), L.m, L.n, L.h(), cfg, &cross);
}

TEST(TwoStage, Stage2EqualsNaiveCoordinateDescent) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const int64_t groups[] = {8, 16, -1, 13};
  for (int k = 0; k < 8; ++k) {
    const QuantConfig cfg =
        two_stage_config(2 + k % 4, groups[k % 4], k & 1, k % 3 ? GridStyle::Quarot : GridStyle::Gptq, k & 2, 1 + k % 3);
    SCOPED_TRACE(cfg.describe());
    const NaiveLayer L = test::random_naive_layer(rng, 6, 48 + k, k % 3 == 0, 0.2);
    const std::vector<double> h = L.h(), cross = L.cross(), w = live_weights(L, h);
    const QuantResult start = unrefined(*be, L, cfg, MethodKind::Gptq);
    QuantResult fast = start, naive = start;
    two_stage_refine_scales(*be, w.data(), h, &cross, cfg, fast);
    naive_refine(L, w, naive, cfg.scale_refine_iters);
    for (size_t i = 0; i < fast.scales.size(); ++i)
      ASSERT_NEAR(fast.scales[i], naive.scales[i], kScaleRelTol * std::fabs(naive.scales[i])) << "scale " << i;
    int moved = 0;  // a refinement that never moves would match trivially
    for (size_t i = 0; i < fast.scales.size(); ++i)
      moved += std::fabs(fast.scales[i] - start.scales[i]) > 1e-6 * std::fabs(start.scales[i]);
    EXPECT_GT(moved * 2, static_cast<int>(fast.scales.size()));
    EXPECT_EQ(fast.codes, start.codes);  // integers frozen
    EXPECT_EQ(fast.zeros, start.zeros);
    // The full path (stage 1, sweep, stage 2) is the same computation.
    QuantConfig full = cfg;
    const QuantResult whole = gptq_quantize(*be, L.w.data(), L.m, L.n, h, full, &cross);
    EXPECT_EQ(whole.scales, fast.scales);
    EXPECT_EQ(whole.dequant, fast.dequant);
    EXPECT_LE(objective(L, w, fast.dequant), objective(L, w, start.dequant));
  }
}

TEST(TwoStage, Stage2NeverIncreasesTheObjectiveAtAnyStep) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  for (int k = 0; k < 4; ++k) {
    const QuantConfig cfg = two_stage_config(2 + k, k == 3 ? -1 : 16, k & 1, GridStyle::Quarot, k == 2, 5);
    SCOPED_TRACE(cfg.describe());
    const NaiveLayer L = test::random_naive_layer(rng, 8, 64, k == 1, 0.3);
    const std::vector<double> h = L.h(), cross = L.cross(), w = live_weights(L, h);
    QuantResult r = unrefined(*be, L, cfg, k == 0 ? MethodKind::Gptaq : MethodKind::Gptq);
    std::vector<double> last(L.m, -1.0), first(L.m, 0.0), worst_rise(L.m, 0.0);
    std::vector<int> steps(L.m, 0);
    const ScaleStepHook hook = [&](int64_t row, const double* q) {
      const double obj = row_objective(L, &w[row * L.n], q);
      if (last[row] < 0) first[row] = obj;
      else worst_rise[row] = std::max(worst_rise[row], (obj - last[row]) / last[row]);
      last[row] = obj;
      ++steps[row];
    };
    two_stage_refine_scales(*be, w.data(), h, &cross, cfg, r, &hook);
    for (int64_t row = 0; row < L.m; ++row) {
      EXPECT_EQ(steps[row], 1 + 5 * r.ngroups) << "row " << row;
      EXPECT_LE(worst_rise[row], kMonotoneRelTol) << "row " << row;
      EXPECT_LE(last[row], first[row]) << "row " << row;
    }
  }
}

TEST(TwoStage, GptqObjectiveBeatsStaticGroupGptq) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  for (int bits : {3, 2}) {
    for (int trial = 0; trial < 2; ++trial) {
      const NaiveLayer L = test::random_naive_layer(rng, 32, 128, false, 0.0);
      const std::vector<double> h = L.h();
      QuantConfig base;
      base.bits = bits;
      base.group = 32;
      base.static_groups = true;
      const QuantConfig ts = two_stage_config(bits, 32, true, GridStyle::Quarot, false, 1);
      const double o_base = objective(L, L.w, gptq_quantize(*be, L.w.data(), L.m, L.n, h, base).dequant);
      const double o_ts = objective(L, L.w, gptq_quantize(*be, L.w.data(), L.m, L.n, h, ts).dequant);
      QuantConfig ts1 = ts;
      ts1.scale_refine_iters = 0;
      const double o_ts1 = objective(L, L.w, gptq_quantize(*be, L.w.data(), L.m, L.n, h, ts1).dequant);
      std::printf("w%d g32: two-stage / static-group GPTQ objective %.3f (stage 1 only %.3f)\n", bits,
                  o_ts / o_base, o_ts1 / o_base);
      EXPECT_LT(o_ts, o_base) << "w" << bits;
    }
  }
}

// The method interface end to end: stats from float chunks of both flows.
LinearStats stats_of(Backend& be, const NaiveLayer& L) {
  LinearStats stats(L.n);
  std::vector<float> x(L.tokens * L.n), xf(L.tokens * L.n);
  for (int64_t t = 0; t < L.tokens; ++t)
    for (int64_t i = 0; i < L.n; ++i) {
      x[t * L.n + i] = static_cast<float>(L.x[i * L.tokens + t]);
      xf[t * L.n + i] = static_cast<float>(L.x_fp[i * L.tokens + t]);
    }
  stats.accumulate(be, x.data(), xf.data(), L.tokens, 1);
  return stats;
}

TEST(TwoStage, WorksWithEveryMethod) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const NaiveLayer L = test::random_naive_layer(rng, 12, 72, true, 0.2);
  const LinearStats stats = stats_of(*be, L);
  for (MethodKind method : {MethodKind::Rtn, MethodKind::Gptq, MethodKind::Gptaq}) {
    for (int opt = 0; opt < 8; ++opt) {
      const bool cae = opt & 1, act_order = opt & 2;
      if (cae && method == MethodKind::Rtn) continue;
      const int64_t group = opt & 4 ? 16 : -1;
      QuantConfig cfg = two_stage_config(3, group, opt != 2, GridStyle::Quarot, act_order, 2);
      cfg.method = method;
      cfg.cae = cae;
      cfg.variant = opt == 6 ? Variant::Official : Variant::Exact;
      SCOPED_TRACE(cfg.describe());
      ASSERT_TRUE(cfg.needs_fp_flow());
      const auto m = make_method(cfg);
      const auto prepared = m->prepare(*be, stats);
      const QuantResult r = m->quantize(*be, L.w.data(), L.m, L.n, *prepared);
      const int64_t g = group > 0 ? group : L.n;
      for (int64_t c = 0; c < L.n; ++c) ASSERT_EQ(r.g_idx[c], c / g) << "column " << c;
      for (int64_t row = 0; row < L.m; ++row)
        for (int64_t c = 0; c < L.n; ++c) {
          const size_t i = row * L.n + c, gi = r.g_idx[c] * L.m + row;
          ASSERT_LE(r.codes[i], (1 << cfg.bits) - 1);
          ASSERT_TRUE(std::isfinite(r.dequant[i]));
          // Dequantized values are exactly the stored grid applied to the codes.
          ASSERT_EQ(r.dequant[i], r.scales[gi] * (r.codes[i] - r.zeros[gi])) << "row " << row << " col " << c;
        }
      EXPECT_EQ(r.dead_inputs, 1);
      // Deterministic: the same job gives the same bytes.
      const QuantResult again = m->quantize(*be, L.w.data(), L.m, L.n, *m->prepare(*be, stats));
      EXPECT_EQ(again.dequant, r.dequant);
      EXPECT_EQ(again.scales, r.scales);
    }
  }
}

TEST(TwoStage, ConfigValidationAndDescription) {
  QuantConfig cfg = two_stage_config(4, 32, true, GridStyle::Quarot, false, 3);
  EXPECT_NE(cfg.describe().find("two-stage"), std::string::npos);
  EXPECT_NE(cfg.describe().find("scale-refine-iters=3"), std::string::npos);
  cfg.scale_refine_iters = -1;
  EXPECT_THROW(cfg.validate(), InputError);
  cfg.scale_refine_iters = 1;
  cfg.scale_beta_min = 1.5;
  EXPECT_THROW(cfg.validate(), InputError);
  // Plain RTN has no H: it refuses two-stage grids rather than fitting others silently.
  const std::vector<double> w(4, 1.0);
  cfg.scale_beta_min = 0.5;
  EXPECT_THROW(rtn_quantize(w.data(), 1, 4, cfg), InternalError);
}

}  // namespace
}  // namespace streamq
