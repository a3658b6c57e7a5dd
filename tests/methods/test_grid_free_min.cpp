// The free-min grid (GGUF Q4_1: x = d * code + m, fp16 d and m) against a
// float64 brute-force reference: the nearest fp16 min and scale found by
// scanning every fp16 value, the nearest grid point found by scanning every
// code, and the dequantized value exact in double and equal to ggml's float32
// arithmetic (exact product, one rounded add) once rounded to float32.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "src/methods/grid.h"
#include "src/methods/quant_config_json.h"

namespace streamq {
namespace {

// Every finite fp16 value, ascending.
const std::vector<double>& all_fp16() {
  static const std::vector<double> v = [] {
    std::vector<double> r;
    for (uint32_t h = 0; h < 0x10000; ++h) {
      const float f = f16_to_f32(static_cast<uint16_t>(h));
      if (std::isfinite(f)) r.push_back(f);
    }
    std::sort(r.begin(), r.end());
    return r;
  }();
  return v;
}

double nearest_fp16_bruteforce(double x) {
  double best = 0, err = std::numeric_limits<double>::infinity();
  for (double v : all_fp16())
    if (std::fabs(v - x) < err) {
      err = std::fabs(v - x);
      best = v;
    }
  return best;
}

QuantConfig free_min_cfg() {
  QuantConfig c;
  c.bits = 4;
  c.group = 32;
  c.sym = false;
  c.free_min = true;
  return c;
}

TEST(GridFreeMin, MatchesFloat64BruteForceReference) {
  const Grid g(free_min_cfg());
  std::mt19937_64 rng(11);
  std::normal_distribution<double> n(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<double> x(32);
    const double scale = std::pow(10.0, -3 + trial % 4), shift = (trial % 3 == 0) ? 5 * scale : 0.0;
    for (auto& v : x) v = n(rng) * scale + shift;  // some rows all positive: the range need not include 0
    double xmin = x[0], xmax = x[0];
    for (double v : x) xmin = std::min(xmin, v), xmax = std::max(xmax, v);
    const GridParams p = g.fit(x.data(), 32);
    const double m = nearest_fp16_bruteforce(xmin);
    ASSERT_EQ(p.zero, m) << trial;
    double d = nearest_fp16_bruteforce((xmax - m) / 15);
    if (d <= 0) d = std::ldexp(1.0, -24);
    ASSERT_EQ(p.scale, d) << trial;
    for (double v : x) {
      const int32_t c = g.code(v, p);
      ASSERT_GE(c, 0);
      ASSERT_LE(c, 15);
      double best = std::numeric_limits<double>::infinity();
      for (int k = 0; k <= 15; ++k) best = std::min(best, std::fabs(v - (d * k + m)));
      ASSERT_EQ(std::fabs(v - (d * c + m)), best) << trial << " " << v;
      const double q = g.dequant(c, p);
      ASSERT_EQ(q, d * c + m);
      // ggml: float product (exact), then one rounded float add.
      ASSERT_EQ(static_cast<float>(q), static_cast<float>(c) * static_cast<float>(d) + static_cast<float>(m));
    }
  }
}

TEST(GridFreeMin, MseSearchKeepsFp16ScaleAndMin) {
  QuantConfig c = free_min_cfg();
  c.clip = ClipSearch::Mse;
  const Grid g(c);
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n(0.0, 0.02);
  std::vector<double> x(32);
  for (auto& v : x) v = n(rng);
  const GridParams p = g.fit(x.data(), 32);
  EXPECT_EQ(f16_to_f32(f32_to_f16(static_cast<float>(p.scale))), p.scale);
  EXPECT_EQ(f16_to_f32(f32_to_f16(static_cast<float>(p.zero))), p.zero);
  double err = 0, err_minmax = 0;
  const GridParams pm = Grid(free_min_cfg()).fit(x.data(), 32);
  for (double v : x) {
    err += std::pow(std::fabs(g.quantize(v, p) - v), c.mse_norm);
    err_minmax += std::pow(std::fabs(g.quantize(v, pm) - v), c.mse_norm);
  }
  EXPECT_LE(err, err_minmax);
}

TEST(GridFreeMin, RoundFp16IsNearestForEitherSign) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-70000.0, 70000.0);
  for (int i = 0; i < 300; ++i) {
    const double x = u(rng) * std::pow(10.0, -(i % 9));
    EXPECT_EQ(round_fp16(x), nearest_fp16_bruteforce(x)) << x;
  }
  EXPECT_EQ(round_fp16(1e9), 65504.0);
  EXPECT_EQ(round_fp16(-1e9), -65504.0);
}

TEST(GridFreeMin, ConfigRefusesWhatOnlyIntegerZeroPointsSupport) {
  QuantConfig c = free_min_cfg();
  EXPECT_NO_THROW(c.validate());
  c.sym = true;
  EXPECT_THROW(c.validate(), InputError);
  c = free_min_cfg();
  c.clip = ClipSearch::TwoStage;
  EXPECT_THROW(c.validate(), InputError);
  c = free_min_cfg();
  c.variant = Variant::Official;
  EXPECT_THROW(c.validate(), InputError);
}

TEST(GridFreeMin, JsonRoundTripsTheFlagAndOmitsItWhenUnset) {
  const QuantConfig c = free_min_cfg();
  const nlohmann::json j = quant_config_to_json(c);
  EXPECT_EQ(j.at("free_min"), true);
  EXPECT_TRUE(quant_config_from_json(j, "test").free_min);
  // Unset, the key is absent: manifests and quant files of integer grids are unchanged.
  EXPECT_FALSE(quant_config_to_json(QuantConfig{}).contains("free_min"));
  EXPECT_FALSE(quant_config_from_json(quant_config_to_json(QuantConfig{}), "test").free_min);
  EXPECT_NE(c.describe().find("free-min"), std::string::npos);
}

}  // namespace
}  // namespace streamq
