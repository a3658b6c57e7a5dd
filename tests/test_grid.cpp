// Grid fitting and rounding against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "methods/grid.h"

namespace streamq {
namespace {

QuantConfig cfg_of(int bits, bool sym, GridStyle style) {
  QuantConfig c;
  c.bits = bits;
  c.sym = sym;
  c.grid_style = style;
  return c;
}

TEST(Grid, QuarotSymmetric4Bit) {
  const Grid g(cfg_of(4, true, GridStyle::Quarot));
  const double x[] = {-0.7, 0.35, 0.1};
  const GridParams p = g.fit(x, 3);
  EXPECT_DOUBLE_EQ(p.scale, 0.1);  // max |x| / (2^3 - 1)
  EXPECT_EQ(p.zero, 8);
  EXPECT_EQ(g.code(-0.7, p), 1);          // -7 + 8
  EXPECT_EQ(g.code(0.35, p), 12);         // round(3.5) = 4 (half to even) + 8
  EXPECT_EQ(g.code(-5.0, p), 0);          // clamped to -8
  EXPECT_DOUBLE_EQ(g.quantize(0.25, p), 0.2);  // round(2.5) = 2
}

TEST(Grid, QuarotAsymmetric3Bit) {
  const Grid g(cfg_of(3, false, GridStyle::Quarot));
  const double x[] = {0.2, 0.9};  // range includes 0: [0, 0.9]
  const GridParams p = g.fit(x, 2);
  EXPECT_NEAR(p.scale, 0.9 / 7, 1e-15);
  EXPECT_EQ(p.zero, 0);
  EXPECT_EQ(g.code(0.9, p), 7);
}

TEST(Grid, GptqSymmetricUsesUnsignedRangeWithMidZero) {
  const Grid g(cfg_of(4, true, GridStyle::Gptq));
  const double x[] = {-0.3, 0.75};
  const GridParams p = g.fit(x, 2);
  EXPECT_DOUBLE_EQ(p.scale, 1.5 / 15);  // [-0.75, 0.75] over 15 steps
  EXPECT_EQ(p.zero, 8);
  // All-zero rows get the range [-1, 1] instead of a zero scale.
  const double zeros[] = {0.0, 0.0};
  EXPECT_DOUBLE_EQ(g.fit(zeros, 2).scale, 2.0 / 15);
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
