// The random orthogonal rotation (src/methods/random_orthogonal.h): Q is
// orthogonal to float64 rounding, fixed by its seed, different across seeds,
// sign-fixed from R's diagonal (Haar: for n = 1 both signs occur), and the
// float32 apply/inverse match a float64 product of the float32 Q within a
// bound from the summation length.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "src/methods/random_orthogonal.h"

namespace streamq {
namespace {

TEST(RandomOrthogonal, IsOrthogonalAndFixedByItsSeed) {
  for (const int64_t n : {1, 7, 92, 100, 257}) {
    SCOPED_TRACE(n);
    const std::vector<double> q = random_orthogonal_matrix(n, 5);
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t k = 0; k < n; ++k) dot += q[i * n + k] * q[j * n + k];
        worst = std::max(worst, std::abs(dot - (i == j ? 1.0 : 0.0)));
      }
    // Householder QR in float64: ||Q Q^T - I|| ~ n eps (eps 1.1e-16).
    EXPECT_LT(worst, 1e-14 * static_cast<double>(n)) << "Q Q^T = I";
    EXPECT_EQ(random_orthogonal_matrix(n, 5), q) << "a seed is one matrix";
    if (n > 1) EXPECT_NE(random_orthogonal_matrix(n, 6), q);
  }
  std::set<double> signs;
  for (uint64_t seed = 0; seed < 64; ++seed) signs.insert(random_orthogonal_matrix(1, seed)[0]);
  EXPECT_EQ(signs, (std::set<double>{-1.0, 1.0})) << "n = 1: Q = sign(R), both signs drawn";
}

TEST(RandomOrthogonal, ApplyAndInverseMatchAFloat64ProductAndUndoEachOther) {
  std::mt19937_64 rng(11);
  std::normal_distribution<float> nd;
  for (const int64_t n : {92, 300}) {
    SCOPED_TRACE(n);
    const RandomOrthogonalRotation r(n, 3);
    const int64_t rows = 300;  // more than one 256-row panel
    std::vector<float> x(static_cast<size_t>(rows * n));
    for (float& v : x) v = nd(rng);
    std::vector<float> y = x;
    r.apply(y.data(), rows);
    const std::vector<float>& q = r.q();
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double want = 0, mag = 0;
        for (int64_t k = 0; k < n; ++k) {
          want += static_cast<double>(x[i * n + k]) * q[k * n + j];
          mag += std::abs(static_cast<double>(x[i * n + k]) * q[k * n + j]);
        }
        worst = std::max(worst, std::abs(y[i * n + j] - want) / mag);
        scale = std::max(scale, mag);
      }
    // A float32 dot product of length n errs by at most ~n * 2^-24 of the sum
    // of |terms| (the worst case; sgemm's blocked sums stay inside it).
    EXPECT_LT(worst, static_cast<double>(n) * 0x1.0p-24);
    r.inverse(y.data(), rows);
    double back = 0;
    for (size_t k = 0; k < x.size(); ++k) back = std::max(back, static_cast<double>(std::abs(y[k] - x[k])));
    // Two products (each as above, |x| ~ 4 at most here) and Q^T Q = I to
    // float32 rounding of Q (~sqrt(n) 2^-24).
    EXPECT_LT(back, 1e-4) << "inverse undoes apply";
  }
}

}  // namespace
}  // namespace streamq
