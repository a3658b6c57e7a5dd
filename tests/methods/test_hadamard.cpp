// Hadamard matrices are what they claim (entries +-1, H H^T = m I, exact
// integer check), the orders real models need are built, and the fast
// Kronecker-factored transform equals a float64 dense product on fresh random
// inputs within float32's summation bound, and its inverse undoes it.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "src/core/error.h"
#include "src/methods/hadamard.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

bool is_hadamard(const std::vector<int8_t>& h, int64_t m) {
  if (static_cast<int64_t>(h.size()) != m * m) return false;
  for (const int8_t v : h)
    if (v != 1 && v != -1) return false;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      int64_t dot = 0;
      for (int64_t k = 0; k < m; ++k) dot += h[i * m + k] * h[j * m + k];
      if (dot != (i == j ? m : 0)) return false;
    }
  return true;
}

TEST(Hadamard, EveryMatrixBuiltIsHadamard) {
  int built = 0;
  for (int64_t m : {1, 2}) EXPECT_TRUE(is_hadamard(hadamard_matrix(m), m)) << m;
  for (int64_t m = 4; m <= 300; m += 4) {
    const std::vector<int8_t> h = hadamard_matrix(m);
    if (h.empty()) continue;
    EXPECT_TRUE(is_hadamard(h, m)) << "order " << m;
    ++built;
  }
  // Orders that are no Hadamard order at all.
  for (int64_t m : {3, 6, 10, 18}) EXPECT_TRUE(hadamard_matrix(m).empty()) << m;
  // Sylvester, Paley I and II over prime fields reach most multiples of 4
  // up to 300 (the rest need prime-power fields or shipped matrices).
  EXPECT_GE(built, 60);
}

TEST(Hadamard, TheOrdersRealModelsNeedAreBuilt) {
  // Paley I (12, 20, 140), Paley II (28, 36, 60, 108, 148), Sylvester doubling (40).
  for (int64_t m : {12, 20, 28, 36, 40, 60, 108, 140, 148})
    EXPECT_TRUE(is_hadamard(hadamard_matrix(m), m)) << m;
  struct Case {
    int64_t n, m, pow2;
  };
  // Llama-3 8B hidden/intermediate, SmolLM2-135M, Qwen2-7B intermediate, Llama-3 70B intermediate.
  for (const Case& c : {Case{4096, 1, 4096}, Case{14336, 28, 512}, Case{576, 36, 16}, Case{1536, 12, 128},
                        Case{18944, 148, 128}, Case{28672, 28, 1024}, Case{8192, 1, 8192}}) {
    const HadamardSplit s = hadamard_split(c.n);
    EXPECT_EQ(s.m, c.m) << c.n;
    EXPECT_EQ(s.pow2, c.pow2) << c.n;
  }
  // The shipped orders (hadamard_tables.h): 52, 156 and 172, so Llama-2 7B's
  // 11008 splits as QuaRot's 172 x 64, and doubling reaches 104 = 52 x 2.
  for (int64_t m : {52, 104, 156, 172, 344}) EXPECT_TRUE(is_hadamard(hadamard_matrix(m), m)) << m;
  EXPECT_EQ(hadamard_split(11008).m, 172);
  EXPECT_EQ(hadamard_split(11008).pow2, 64);
  EXPECT_EQ(hadamard_split(52).m, 52);
  // An order no construction and no table reaches: the transform says so,
  // naming the size, rather than guessing (4 * 23 = 92: 91 and 45 are not prime).
  EXPECT_EQ(hadamard_split(92).m, 0);
  try {
    HadamardTransform t(92);
    ADD_FAILURE() << "size 92 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("size 92"), std::string::npos) << e.what();
  }
}

// H_n = H_m (x) H_p in float64, H_p Sylvester's (-1)^popcount(i & j).
std::vector<double> dense_hadamard(int64_t n) {
  const HadamardSplit s = hadamard_split(n);
  const std::vector<int8_t> hm = hadamard_matrix(s.m);
  std::vector<double> h(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t a = i / s.pow2, b = i % s.pow2, a2 = j / s.pow2, b2 = j % s.pow2;
      const double hp = (std::popcount(static_cast<uint64_t>(b & b2)) & 1) ? -1.0 : 1.0;
      h[i * n + j] = hm[a * s.m + a2] * hp;
    }
  return h;
}

TEST(Hadamard, FastTransformMatchesTheDenseFloat64Product) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rows = 3;
  for (int64_t n : {1, 2, 8, 12, 40, 56, 96, 576, 1536, 296}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const HadamardSplit s = hadamard_split(n);
    ASSERT_GT(s.m, 0);
    const std::vector<float> signs = random_signs(n, seed + static_cast<uint64_t>(n));
    const HadamardTransform t(n, signs);
    std::vector<float> x(static_cast<size_t>(rows * n));
    for (auto& v : x) v = normal(rng);
    std::vector<float> y = x;
    t.apply(y.data(), rows);
    const std::vector<double> h = dense_hadamard(n);
    // Each output is a signed sum of the n inputs: log2(pow2) butterfly
    // levels and m - 1 dense additions, each rounding by at most u = 2^-24
    // relative to the partial sum's magnitude, and one scaling. So |y - ref|
    // <= (log2(pow2) + m + 1) u sum|x| / sqrt(n) (the standard bound for
    // recursive summation; sign flips are exact).
    const double u = std::ldexp(1.0, -24), levels = std::log2(static_cast<double>(s.pow2));
    for (int64_t r = 0; r < rows; ++r) {
      double abs_sum = 0;
      for (int64_t j = 0; j < n; ++j) abs_sum += std::fabs(x[r * n + j]);
      const double bound = (levels + static_cast<double>(s.m) + 1) * u * abs_sum / std::sqrt(double(n)) + 1e-30;
      for (int64_t i = 0; i < n; ++i) {
        double ref = 0;
        for (int64_t j = 0; j < n; ++j) ref += h[i * n + j] * signs[j] * static_cast<double>(x[r * n + j]);
        ref /= std::sqrt(static_cast<double>(n));
        ASSERT_LE(std::fabs(y[r * n + i] - ref), bound) << "row " << r << " element " << i;
      }
    }
    // The inverse undoes it (both directions' errors, so twice the bound
    // against the input's own scale).
    t.inverse(y.data(), rows);
    for (int64_t r = 0; r < rows; ++r) {
      double abs_sum = 0;
      for (int64_t j = 0; j < n; ++j) abs_sum += std::fabs(x[r * n + j]);
      const double bound = 2 * (levels + static_cast<double>(s.m) + 2) * u * abs_sum / std::sqrt(double(n)) * 2;
      for (int64_t i = 0; i < n; ++i) ASSERT_LE(std::fabs(y[r * n + i] - x[r * n + i]), bound) << r << " " << i;
    }
  }
}

TEST(Hadamard, SignsAreSeededAndBadSignCountsAreErrors) {
  EXPECT_EQ(random_signs(64, 7), random_signs(64, 7));
  EXPECT_NE(random_signs(64, 7), random_signs(64, 8));
  for (float v : random_signs(64, 7)) EXPECT_TRUE(v == 1.0f || v == -1.0f);
  EXPECT_THROW(HadamardTransform(64, std::vector<float>(63, 1.0f)), InputError);
}

}  // namespace
}  // namespace streamq
