// Grid fitting and rounding against values worked out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/gptq_sweep_problem.h"
#include "src/core/dtype.h"
#include "src/methods/grid.h"
#include "src/methods/grid_mse_avx2.h"
#include "src/methods/sweep_problem.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

QuantConfig cfg_of(int bits, bool sym, GridStyle style) {
  QuantConfig c;
  c.bits = bits;
  c.sym = sym;
  c.grid_style = style;
  return c;
}

// fp16 values near the hand-computed scales below (scales are stored as fp16).
constexpr double kF16Tenth = 0.0999755859375;        // fp16(0.1) = 1638 / 16384
constexpr double kF16NinthOf7 = 0.12854003906250;    // fp16(0.9 / 7) = 2106 / 16384

TEST(Grid, QuarotSymmetric4Bit) {
  const Grid g(cfg_of(4, true, GridStyle::Quarot));
  const double x[] = {-0.7, 0.35, 0.1};
  const GridParams p = g.fit(x, 3);
  EXPECT_EQ(p.scale, kF16Tenth);  // fp16(max |x| / (2^3 - 1))
  EXPECT_EQ(p.zero, 8);
  EXPECT_EQ(g.code(-0.7, p), 1);          // round(-7.002) = -7, + 8
  EXPECT_EQ(g.code(0.35, p), 12);         // round(3.501) = 4, + 8
  EXPECT_EQ(g.code(-5.0, p), 0);          // clamped to -8
  EXPECT_EQ(g.code(0.2499, p), 10);       // round(2.4996) = 2, + 8
  EXPECT_EQ(g.quantize(0.2499, p), 2 * kF16Tenth);
}

TEST(Grid, ScalesAreFp16Values) {
  EXPECT_EQ(round_scale_fp16(0.1), kF16Tenth);
  EXPECT_EQ(round_scale_fp16(1e-12), 5.9604644775390625e-08);  // smallest fp16 subnormal, never 0
  EXPECT_EQ(round_scale_fp16(0.0), 5.9604644775390625e-08);
  EXPECT_EQ(round_scale_fp16(1e9), 65504.0);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {true, false})
      for (GridStyle style : {GridStyle::Quarot, GridStyle::Gptq})
        for (ClipSearch clip : {ClipSearch::MinMax, ClipSearch::Mse}) {
          QuantConfig c = cfg_of(bits, sym, style);
          c.clip = clip;
          const Grid g(c);
          std::vector<double> x(40);
          for (auto& v : x) v = nd(rng) * std::exp(nd(rng) * 3);
          const GridParams p = g.fit(x.data(), 40);
          EXPECT_GT(p.scale, 0);
          EXPECT_EQ(static_cast<double>(f16_to_f32(f32_to_f16(static_cast<float>(p.scale)))), p.scale);
        }
}

TEST(Grid, QuarotAsymmetric3BitGptqV2KeepsZeroPointZero) {
  QuantConfig c = cfg_of(3, false, GridStyle::Quarot);
  c.checkpoint_format = CheckpointFormat::GptqV2;
  const Grid g(c);
  const double x[] = {0.2, 0.9};  // range includes 0: [0, 0.9]
  const GridParams p = g.fit(x, 2);
  EXPECT_EQ(p.scale, kF16NinthOf7);
  EXPECT_EQ(p.zero, 0);
  EXPECT_EQ(g.code(0.9, p), 7);  // 0.9 / 0.12854 = 7.0017
}

TEST(Grid, ClassicFormatKeepsAsymmetricZeroPointsAtLeastOne) {
  // Classic GPTQ checkpoints store zero - 1 unsigned: zero 0 is impossible.
  // Min/max would give zero 0 for [0, 0.9]; zero 1 with the scale widened to
  // 0.9 / (maxq - 1) keeps 0.9 on the grid.
  for (GridStyle style : {GridStyle::Quarot, GridStyle::Gptq}) {
    const Grid g(cfg_of(3, false, style));  // checkpoint_format defaults to the classic gptq
    const double x[] = {0.2, 0.9};
    const GridParams p = g.fit(x, 2);
    EXPECT_EQ(p.zero, 1);
    EXPECT_EQ(p.scale, round_scale_fp16(0.9 / 6));
    EXPECT_EQ(g.code(0.9, p), 7);
    EXPECT_NEAR(g.quantize(0.9, p), 0.9, 1e-3);
    // A range that barely reaches below 0 (zero would round to 0) too.
    const double y[] = {-0.01, 0.9};
    const GridParams q = g.fit(y, 2);
    EXPECT_EQ(q.zero, 1);
    EXPECT_EQ(g.code(-0.01, q), 1);
    EXPECT_EQ(g.code(0.9, q), 7);
  }
  // MSE search candidates obey it too.
  QuantConfig c = cfg_of(2, false, GridStyle::Quarot);
  c.clip = ClipSearch::Mse;
  const Grid g(c);
  std::vector<double> x(64);
  for (int i = 0; i < 64; ++i) x[i] = 0.01 * i;  // all >= 0
  EXPECT_GE(g.fit(x.data(), 64).zero, 1);
}

TEST(Grid, GptqSymmetricUsesUnsignedRangeWithMidZero) {
  const Grid g(cfg_of(4, true, GridStyle::Gptq));
  const double x[] = {-0.3, 0.75};
  const GridParams p = g.fit(x, 2);
  EXPECT_EQ(p.scale, round_scale_fp16(1.5 / 15));  // [-0.75, 0.75] over 15 steps
  EXPECT_EQ(p.zero, 8);
  // All-zero rows get the range [-1, 1] instead of a zero scale.
  const double zeros[] = {0.0, 0.0};
  EXPECT_EQ(g.fit(zeros, 2).scale, round_scale_fp16(2.0 / 15));
}

// Grid::fit's MSE search stops a candidate's sum once it reaches the best
// so far; the sweep op's CPU twin (kernels/gptq_sweep_problem.h's fit) sums
// every candidate in full, the plain search. They choose the same grid, bit
// for bit, on fresh rows of every kind the search meets: Gaussian, heavy-
// tailed, one outlier, all equal, all zero, a few values.
TEST(Grid, MseSearchWithEarlyStopsPicksTheFullSearchsGrid) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<double> nd(0.0, 1.0);
  int rows = 0;
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {true, false})
      for (GridStyle style : {GridStyle::Quarot, GridStyle::Gptq})
        for (int kind = 0; kind < 6; ++kind)
          for (int64_t len : {1, 7, 64, 128, 1000}) {
            QuantConfig c = cfg_of(bits, sym, style);
            c.clip = ClipSearch::Mse;
            std::vector<double> x(static_cast<size_t>(len));
            for (auto& v : x) {
              switch (kind) {
                case 0: v = nd(rng); break;
                case 1: v = nd(rng) * std::exp(nd(rng) * 2); break;  // heavy tails
                case 2: v = 0.01 * nd(rng); break;
                case 3: v = 0.25; break;                             // all equal
                case 4: v = 0.0; break;                              // all zero
                default: v = std::round(nd(rng) * 2) / 4; break;     // a few values: ties
              }
            }
            if (kind == 2) x[x.size() / 2] = 3.0;  // one outlier
            const SweepGrid sg = sweep_grid_from(c);
            std::vector<double> losses(static_cast<size_t>(sg.mse_steps));
            const auto want = sweep_math::fit(sg, x.data(), len, 1, losses.data());
            const GridParams got = Grid(c).fit(x.data(), len);
            EXPECT_EQ(got.scale, want.scale) << c.describe() << " kind " << kind << " len " << len;
            EXPECT_EQ(got.zero, want.zero) << c.describe() << " kind " << kind << " len " << len;
            ++rows;
          }
  EXPECT_EQ(rows, 4 * 2 * 2 * 6 * 5);
}

// The plain MSE search, written out: every candidate's sum in full with
// glibc's double pow, the first strict minimum kept.
GridParams full_mse_search(const QuantConfig& c, const double* x, int64_t len) {
  QuantConfig mm = c;
  mm.clip = ClipSearch::MinMax;
  const Grid g(c), range_of(mm);
  double xmin = 0, xmax = 0;
  if (c.free_min) xmin = xmax = x[0];
  for (int64_t k = 0; k < len; ++k) {
    xmin = std::min(xmin, x[k]);
    xmax = std::max(xmax, x[k]);
  }
  if (c.sym) {
    const double amax = std::max(-xmin, xmax);
    xmax = amax;
    xmin = xmin < 0 ? -amax : 0.0;
  }
  // min/max fit of two values [lo, hi] is the grid of that range (both
  // conventions widen it to 0 and, for sym, symmetrize it: already so here).
  const auto range = [&](double lo, double hi) {
    const double two[] = {lo, hi};
    return range_of.fit(two, 2);
  };
  GridParams best = range(xmin, xmax);
  double best_err = std::numeric_limits<double>::infinity();
  const int steps = static_cast<int>(c.mse_max_shrink * c.mse_grid);
  for (int i = 0; i < steps; ++i) {
    const double shrink = 1.0 - static_cast<double>(i) / c.mse_grid;
    const GridParams p = range(shrink * xmin, shrink * xmax);
    double err = 0;
    for (int64_t k = 0; k < len; ++k) err += std::pow(std::fabs(g.quantize(x[k], p) - x[k]), c.mse_norm);
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

// Grid::fit screens the MSE candidates with float32 sums and an error bound
// (grid_mse_avx2.h) and sums only the survivors exactly. Its pick is the
// plain search's, bit for bit, on fresh rows of every kind, both grid styles,
// free-min grids and other norms; rows of a few distinct values make several
// candidates survive, so the exact tie-break runs too.
TEST(Grid, MseSearchsVectorBoundPicksThePlainSearchsGrid) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<double> nd(0.0, 1.0);
  MseSearchCounts counts;
  int rows = 0;
  for (int bits : {2, 3, 4})
    for (int variant = 0; variant < 4; ++variant)  // sym/asym QuaRot, sym GPTQ, free-min
      for (double norm : {2.4, 2.0, 1.0, 3.7})
        for (int kind = 0; kind < 7; ++kind)
          for (int64_t len : {8, 13, 64, 576}) {
            QuantConfig c = cfg_of(bits, variant == 0 || variant == 2, variant == 2 ? GridStyle::Gptq : GridStyle::Quarot);
            c.free_min = variant == 3;
            c.clip = ClipSearch::Mse;
            c.mse_norm = norm;
            std::vector<double> x(static_cast<size_t>(len));
            for (auto& v : x) {
              switch (kind) {
                case 0: v = 0.02 * nd(rng); break;
                case 1: v = nd(rng) * std::exp(nd(rng) * 2); break;   // heavy tails
                case 2: v = 1e-30 * nd(rng); break;                   // below float's range once powered
                case 3: v = 1e9 * nd(rng); break;                     // large: float powers overflow at norm 3.7
                case 4: v = std::round(nd(rng) * 2) / 4; break;       // a few values: ties
                case 5: v = 0.25; break;                              // all equal
                default: v = 0.01 * nd(rng) + (nd(rng) > 2 ? 1.0 : 0.0); break;  // outliers
              }
            }
            const GridParams want = full_mse_search(c, x.data(), len);
            const GridParams got = Grid(c).fit(x.data(), len, 1, &counts);
            EXPECT_EQ(got.scale, want.scale) << c.describe() << " norm " << norm << " kind " << kind << " len " << len;
            EXPECT_EQ(got.zero, want.zero) << c.describe() << " norm " << norm << " kind " << kind << " len " << len;
            ++rows;
          }
  EXPECT_EQ(rows, 3 * 4 * 4 * 7 * 4);
  if (!grid_mse_avx2::available()) GTEST_SKIP() << "this CPU has no AVX2+FMA: only the exact search ran";
  EXPECT_GT(counts.vector_rows, rows / 2);      // the screen ran on most rows...
  EXPECT_GT(counts.exact_candidates, 0);        // ...and left ties to the exact sums
}

TEST(Grid, MseSearchShrinksTheRangeForAnOutlier) {
  // 1023 values spread over [-0.5, 0.5] and one outlier at 1.0: clipping the
  // outlier halves everyone else's step, which wins under the 2.4-norm.
  QuantConfig c = cfg_of(4, true, GridStyle::Quarot);
  c.clip = ClipSearch::Mse;
  const int len = 1024;
  std::vector<double> x(len, 0.0);
  for (int i = 0; i < len; ++i) x[i] = -0.5 + static_cast<double>((i * 389) % len) / len;
  x[5] = 1.0;
  const Grid mse(c);
  c.clip = ClipSearch::MinMax;
  const Grid minmax(c);
  const GridParams pm = mse.fit(x.data(), len), p0 = minmax.fit(x.data(), len);
  EXPECT_LT(pm.scale, p0.scale);
  double em = 0, e0 = 0;
  for (double v : x) {
    em += std::pow(std::fabs(mse.quantize(v, pm) - v), 2.4);
    e0 += std::pow(std::fabs(minmax.quantize(v, p0) - v), 2.4);
  }
  EXPECT_LT(em, e0);
}

}  // namespace
}  // namespace streamq
