// Backend::hadamard_rows on the CPU mixes narrow segments (n / m < 8) a
// tile of rows at a time: the same bits as the one-row-at-a-time
// arithmetic, written out here plainly (signs, butterfly, +-1 mix from 0
// with a' ascending, scale), for every row of a count that is not a
// multiple of the tile, forward and inverse, with and without signs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "src/methods/hadamard.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

std::vector<float> one_row_at_a_time(std::vector<float> x, int64_t rows, int64_t n, const std::vector<float>& hm,
                                     int64_t m, const float* signs, bool inverse) {
  const int64_t p = n / m;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * n;
    if (!inverse && signs)
      for (int64_t i = 0; i < n; ++i) row[i] *= signs[i];
    for (int64_t a = 0; a < m; ++a)
      for (int64_t len = 1; len < p; len <<= 1)
        for (int64_t i = 0; i < p; i += 2 * len)
          for (int64_t j = i; j < i + len; ++j) {
            float* s = row + a * p;
            const float u = s[j], v = s[j + len];
            s[j] = u + v;
            s[j + len] = u - v;
          }
    std::vector<float> y(static_cast<size_t>(n), 0.0f);
    for (int64_t a = 0; a < m; ++a)
      for (int64_t a2 = 0; a2 < m; ++a2) {
        const float h = inverse ? hm[a2 * m + a] : hm[a * m + a2];
        for (int64_t b = 0; b < p; ++b) y[a * p + b] += h > 0 ? row[a2 * p + b] : -row[a2 * p + b];
      }
    for (int64_t i = 0; i < n; ++i) row[i] = y[i] * scale;
    if (inverse && signs)
      for (int64_t i = 0; i < n; ++i) row[i] *= signs[i];
  }
  return x;
}

TEST(HadamardTiles, NarrowSegmentsGiveTheOneRowBits) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto be = make_cpu_backend();
  struct Case {
    int64_t m, p;
  };
  for (const Case c : {Case{12, 1}, Case{12, 2}, Case{20, 4}, Case{172, 1}})
    for (const bool inverse : {false, true})
      for (const bool with_signs : {false, true}) {
        const int64_t n = c.m * c.p, rows = 37;
        const std::vector<int8_t> h8 = hadamard_matrix(c.m);
        const std::vector<float> hm(h8.begin(), h8.end());
        std::vector<float> signs(static_cast<size_t>(n));
        for (auto& s : signs) s = nd(rng) > 0 ? 1.0f : -1.0f;
        std::vector<float> x(static_cast<size_t>(rows * n));
        for (auto& v : x) v = nd(rng);
        const std::vector<float> want =
            one_row_at_a_time(x, rows, n, hm, c.m, with_signs ? signs.data() : nullptr, inverse);
        be->hadamard_rows(x.data(), rows, n, hm.data(), c.m, with_signs ? signs.data() : nullptr, inverse);
        EXPECT_EQ(x, want) << "m " << c.m << " p " << c.p << (inverse ? " inverse" : "") << (with_signs ? " signs" : "");
      }
}

}  // namespace
}  // namespace streamq
