// The per-token activation / KV quantizer against a float64 reference that
// picks the nearest grid level by search (not by rounding a quotient), on
// fresh random rows of every bit width, both grids and two clip ratios; and
// its edge cases: zero rows, constant rows, non-finite values, bits 16.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "src/core/error.h"
#include "kernels/cpu/act_quant.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// The grid of one row, from its definition: levels scale * (q - zero) for
// the integers q of the range; the value is the nearest level (a tie goes to
// the level farther from 0, as rounding half away from zero does).
std::vector<float> reference(const std::vector<float>& x, int64_t rows, int64_t width, const ActQuantConfig& c) {
  std::vector<float> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mn = 0, mx = 0;
    for (int64_t i = 0; i < width; ++i) {
      mn = std::min(mn, double(x[r * width + i]));
      mx = std::max(mx, double(x[r * width + i]));
    }
    mn *= c.clip;
    mx *= c.clip;
    double scale, zero, qmin, qmax;
    if (c.sym) {
      qmax = std::pow(2.0, c.bits - 1) - 1;
      qmin = -qmax - 1;
      const double m = std::max(std::fabs(mn), mx);
      scale = m > 0 ? m / qmax : 1.0;
      zero = 0;
    } else {
      if (mn == 0 && mx == 0) mn = -1, mx = 1;
      qmin = 0;
      qmax = std::pow(2.0, c.bits) - 1;
      scale = (mx - mn) / qmax;
      zero = std::round(-mn / scale);
    }
    for (int64_t i = 0; i < width; ++i) {
      const double v = x[r * width + i];
      double best = 0, best_d = std::numeric_limits<double>::infinity();
      for (double q = qmin; q <= qmax; q += 1) {
        const double level = scale * (q - zero), d = std::fabs(v - level);
        if (d < best_d || (d == best_d && std::fabs(level) > std::fabs(best))) best = level, best_d = d;
      }
      out[r * width + i] = static_cast<float>(best);
    }
  }
  return out;
}

TEST(ActQuant, MatchesTheNearestLevelOnRandomRows) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> shift(-2.0f, 2.0f);
  const int64_t rows = 17, width = 96;
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {false, true})
      for (double clip : {1.0, 0.9}) {
        SCOPED_TRACE("bits " + std::to_string(bits) + (sym ? " sym" : " asym") + " clip " + std::to_string(clip));
        std::vector<float> x(static_cast<size_t>(rows * width));
        for (int64_t r = 0; r < rows; ++r) {
          const float s = shift(rng), a = std::exp(shift(rng));  // rows of different offsets and scales
          for (int64_t i = 0; i < width; ++i) x[r * width + i] = s + a * normal(rng);
        }
        const ActQuantConfig c{bits, sym, clip};
        std::vector<float> y = x;
        fake_quant_rows(y.data(), rows, width, c, "test rows");
        const std::vector<float> want = reference(x, rows, width, c);
        for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], want[i]) << "element " << i << " of " << x[i];
      }
}

TEST(ActQuant, EdgeRows) {
  const ActQuantConfig asym4{4, false, 1.0}, sym4{4, true, 1.0};
  for (const ActQuantConfig& c : {asym4, sym4}) {
    std::vector<float> zeros(8, 0.0f);
    fake_quant_rows(zeros.data(), 1, 8, c, "zeros");
    for (float v : zeros) EXPECT_EQ(v, 0.0f);  // a zero row stays zero (its grid is [-1, 1])
    for (float k : {3.25f, -0.7f, 1e-20f}) {
      std::vector<float> row(8, k);
      fake_quant_rows(row.data(), 1, 8, c, "constant");
      for (float v : row) EXPECT_EQ(v, k) << "a constant row is one of its own grid's ends";
    }
  }
  // bits 16: untouched, even for values no grid would keep.
  std::vector<float> x = {1.0f, -3.5f, 1e30f};
  const std::vector<float> before = x;
  fake_quant_rows(x.data(), 1, 3, ActQuantConfig{}, "off");
  EXPECT_EQ(x, before);
}

TEST(ActQuant, NonFiniteValuesAreErrorsNamingTheTensorAndRow) {
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(4 * 8, 1.0f);
    x[2 * 8 + 5] = bad;
    try {
      fake_quant_rows(x.data(), 4, 8, ActQuantConfig{4, false, 1.0}, "layer 3 mlp.down_proj input");
      ADD_FAILURE() << "non-finite accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("layer 3 mlp.down_proj input: row 2"), std::string::npos) << e.what();
    }
  }
}

TEST(ActQuant, BadSettingsNameTheFlag) {
  EXPECT_THROW((ActQuantConfig{1, false, 1.0}.validate("--abits")), InputError);
  EXPECT_THROW((ActQuantConfig{17, false, 1.0}.validate("--abits")), InputError);
  EXPECT_THROW((ActQuantConfig{4, false, 0.0}.validate("--a-clip")), InputError);
  EXPECT_THROW((ActQuantConfig{4, false, 1.5}.validate("--a-clip")), InputError);
  EXPECT_NO_THROW((ActQuantConfig{4, false, 0.9}.validate("--abits")));
  try {
    ActQuantConfig{1, false, 1.0}.validate("--kv-bits");
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-bits"), std::string::npos);
  }
}

}  // namespace
}  // namespace streamq
