// The vectorized exp (kernels/cpu/vec_exp.h) against libm's in float64: its
// error bound over the domain, the vector lanes equal to the scalar form at
// any offset and length (so a parallel split cannot change a value), the
// edges (underflow, overflow, NaN), the row max, and SwiGLU on it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/vec_exp.h"
#include "tests/support/test_util.h"

namespace streamq::cpu {
namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// |got - exp(x)| in units of the float spacing at exp(x).
double ulp_error(float x, float got) {
  const double want = std::exp(static_cast<double>(x));
  int e = 0;
  std::frexp(want, &e);
  const double ulp = std::ldexp(1.0, std::max(e - 24, -149));
  return std::abs(static_cast<double>(got) - want) / ulp;
}

TEST(VecExp, WithinItsUlpBoundOverTheWholeDomain) {
  // Every 251st float between the domain's ends (about 8 million of them,
  // both signs, every binade), and fresh random ones.
  double worst = 0;
  float worst_x = 0;
  auto check = [&](float x) {
    const double e = ulp_error(x, vec_exp_scalar(x));
    if (e > worst) worst = e, worst_x = x;
  };
  for (float lim : {-87.3f, 88.3f}) {
    for (uint32_t b = 0; b <= bits_of(std::abs(lim)); b += 251) {
      float x;
      std::memcpy(&x, &b, sizeof x);
      check(lim < 0 ? -x : x);
    }
  }
  STREAMQ_FRESH_RNG(rng);
  std::uniform_real_distribution<float> u(-87.3f, 88.3f);
  for (int i = 0; i < 1000000; ++i) check(u(rng));
  RecordProperty("worst_ulp", std::to_string(worst));
  EXPECT_LT(worst, kVecExpMaxUlp) << "at x = " << worst_x;
  EXPECT_EQ(vec_exp_scalar(0.0f), 1.0f);
}

TEST(VecExp, EdgesUnderflowToZeroOverflowToInfAndKeepNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(vec_exp_scalar(-88.0f), 0.0f);
  EXPECT_EQ(vec_exp_scalar(-inf), 0.0f);
  EXPECT_EQ(vec_exp_scalar(89.0f), inf);
  EXPECT_EQ(vec_exp_scalar(inf), inf);
  EXPECT_TRUE(std::isnan(vec_exp_scalar(std::numeric_limits<float>::quiet_NaN())));
  // The same through the vector lanes.
  const std::vector<float> x = {-88.0f, -inf, 89.0f, inf, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  std::vector<float> out(x.size());
  const double sum = exp_shifted_sum(x.data(), 0.0f, static_cast<int64_t>(x.size()), out.data());
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[2], inf);
  EXPECT_EQ(out[3], inf);
  EXPECT_TRUE(std::isnan(out[4]));
  EXPECT_EQ(out[5], 1.0f);
  EXPECT_TRUE(std::isnan(sum));
}

TEST(VecExp, LanesEqualTheScalarFormAtAnyOffsetAndLengthAndTheSumIsTheirs) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 20.0f);
  std::vector<float> x(2000);
  for (float& v : x) v = nd(rng);
  for (int64_t off : {0, 1, 5, 16}) {
    for (int64_t n : {1, 2, 15, 16, 17, 31, 33, 100, 1531}) {
      // As the softmaxes call it, from the span's max (here 3 below it: some
      // terms above 1); sigma 20 sends many under exp's range (0).
      const float shift = *std::max_element(x.begin() + off, x.begin() + off + n) - 3.0f;
      std::vector<float> out(static_cast<size_t>(n), -1.0f);
      const double sum = exp_shifted_sum(x.data() + off, shift, n, out.data());
      double want_sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float want = vec_exp_scalar(x[static_cast<size_t>(off + i)] - shift);
        ASSERT_EQ(bits_of(out[static_cast<size_t>(i)]), bits_of(want)) << "off " << off << " n " << n << " i " << i;
        want_sum += want;
      }
      // Lane order against index order: doubles of floats, n terms.
      EXPECT_NEAR(sum, want_sum, 4.0 * n * std::numeric_limits<double>::epsilon() * want_sum);
      EXPECT_EQ(exp_shifted_sum(x.data() + off, shift, n, nullptr), sum);  // the same without storing
      // In place, as the attention softmax calls it.
      std::vector<float> io(x.begin() + off, x.begin() + off + n);
      EXPECT_EQ(exp_shifted_sum(io.data(), shift, n, io.data()), sum);
      EXPECT_EQ(io, out);
    }
  }
}

TEST(VecExp, MaxOfIsTheLargestValue) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 5.0f);
  for (int64_t n : {1, 7, 16, 17, 48, 49153}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = nd(rng);
    EXPECT_EQ(max_of(x.data(), n), *std::max_element(x.begin(), x.end())) << n;
    x[static_cast<size_t>(rng() % static_cast<uint64_t>(n))] = 1e30f;  // anywhere, tail included
    EXPECT_EQ(max_of(x.data(), n), 1e30f) << n;
  }
}

TEST(VecExp, SwigluSpanIsTheScalarFormulaAndNearFloat64) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 6.0f);
  const int64_t n = 1000;
  std::vector<float> g(n), up(n);
  for (float& v : g) v = nd(rng);
  for (float& v : up) v = nd(rng);
  g[3] = -100.0f;  // exp(-g) overflows: silu is -0
  g[4] = 100.0f;   // exp(-g) underflows: silu is g
  std::vector<float> whole(n);
  swiglu_span(g.data(), up.data(), whole.data(), n);
  // Split as parallel_chunks might: every element the same bits.
  std::vector<float> split(n);
  for (int64_t a = 0; a < n; a += 37)
    swiglu_span(g.data() + a, up.data() + a, split.data() + a, std::min<int64_t>(37, n - a));
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    ASSERT_EQ(bits_of(whole[k]), bits_of(split[k])) << i;
    ASSERT_EQ(bits_of(whole[k]), bits_of(g[k] / (1.0f + vec_exp_scalar(-g[k])) * up[k])) << i;
    const double want = g[k] / (1.0 + std::exp(-static_cast<double>(g[k]))) * up[k];
    // The exp's 2 ulp, then 1 + e, the divide and the product (each <= eps/2);
    // where exp(-g) leaves the float range (g < -88.4) silu is -0 against a
    // value under 1e-36 (as libm's expf's inf gave).
    EXPECT_NEAR(whole[k], want, std::max(4.0 * std::numeric_limits<float>::epsilon() * std::abs(want), 1e-36)) << i;
  }
  EXPECT_EQ(whole[3], 0.0f);
  EXPECT_EQ(whole[4], 100.0f * up[4]);
}

}  // namespace
}  // namespace streamq::cpu
