// LoaQ's target in streamq's (out, in) convention against the paper's
// (tokens x features) formulas computed directly in float64.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/backend.h"
#include "src/methods/linear_stats.h"
#include "src/methods/loaq.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using Mat = std::vector<double>;  // row-major

Mat matmul(const Mat& a, const Mat& b, int64_t r, int64_t k, int64_t c) {
  Mat out(r * c, 0.0);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j)
      for (int64_t l = 0; l < k; ++l) out[i * c + j] += a[i * k + l] * b[l * c + j];
  return out;
}

Mat transpose(const Mat& a, int64_t r, int64_t c) {
  Mat out(r * c);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) out[j * r + i] = a[i * c + j];
  return out;
}

// Solves A Z = B (A [k,k], B [k,r]) by Gauss-Jordan with partial pivoting.
Mat solve(Mat a, Mat b, int64_t k, int64_t r) {
  for (int64_t c = 0; c < k; ++c) {
    int64_t p = c;
    for (int64_t i = c + 1; i < k; ++i)
      if (std::fabs(a[i * k + c]) > std::fabs(a[p * k + c])) p = i;
    for (int64_t j = 0; j < k; ++j) std::swap(a[c * k + j], a[p * k + j]);
    for (int64_t j = 0; j < r; ++j) std::swap(b[c * r + j], b[p * r + j]);
    for (int64_t i = 0; i < k; ++i) {
      if (i == c) continue;
      const double f = a[i * k + c] / a[c * k + c];
      for (int64_t j = 0; j < k; ++j) a[i * k + j] -= f * a[c * k + j];
      for (int64_t j = 0; j < r; ++j) b[i * r + j] -= f * b[c * r + j];
    }
  }
  for (int64_t c = 0; c < k; ++c)
    for (int64_t j = 0; j < r; ++j) b[c * r + j] /= a[c * k + c];
  return b;
}

TEST(Loaq, TargetMatchesThePapersTokensByFeaturesFormula) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  const int64_t T = 300, N = 14, M = 9;  // tokens, in, out
  const double alpha = 0.7, beta = 0.4, percdamp = 0.01;
  Mat x(T * N), xq(T * N), wp(N * M), h(T * M), hq(T * M);
  for (auto& v : xq) v = nd(rng);
  for (int64_t i = 0; i < T * N; ++i) x[i] = xq[i] * (1.0 + 0.2 * nd(rng)) + 0.1 * nd(rng);
  for (auto& v : wp) v = nd(rng) * 0.3;
  for (auto& v : h) v = nd(rng);
  for (int64_t i = 0; i < T * M; ++i) hq[i] = h[i] + 0.3 * nd(rng);

  // Paper: H = X^T X^ (quantized flow), C = X^T (X - X^), Delta = H^-1 X^T (h - h^),
  // W~ = (I + a H^-1 C) W + b Delta, with the same damping streamq applies.
  const Mat xqt = transpose(xq, T, N);
  Mat hp = matmul(xqt, xq, N, T, N);
  double mean = 0;
  for (int64_t i = 0; i < N; ++i) mean += hp[i * N + i];
  mean /= N;
  Mat hd = hp;
  for (int64_t i = 0; i < N; ++i) hd[i * N + i] += percdamp * mean;
  Mat dx(T * N), dh(T * M);
  for (int64_t i = 0; i < T * N; ++i) dx[i] = x[i] - xq[i];
  for (int64_t i = 0; i < T * M; ++i) dh[i] = h[i] - hq[i];
  const Mat cw = matmul(matmul(xqt, dx, N, T, N), wp, N, N, M);  // C W
  const Mat xdh = matmul(xqt, dh, N, T, M);                      // X^T (h - h^)
  Mat rhs(N * M);
  for (int64_t i = 0; i < N * M; ++i) rhs[i] = alpha * cw[i] + beta * xdh[i];
  const Mat corr = solve(hd, rhs, N, M);
  Mat target_paper(N * M);
  for (int64_t i = 0; i < N * M; ++i) target_paper[i] = wp[i] + corr[i];

  // streamq: W (out, in) = W_paper^T; D1 = dX X^T; E = sum_t (h_t - h^_t) x^_t^T.
  const Mat w = transpose(wp, N, M);
  const Mat d1 = matmul(transpose(dx, T, N), xq, N, T, N);
  const Mat e = matmul(transpose(dh, T, M), xq, M, T, N);
  auto be = make_cpu_backend();
  const Mat got = loaq_target(*be, w.data(), M, N, hp, &d1, &e, alpha, beta, percdamp);
  const Mat want = transpose(target_paper, N, M);
  double scale = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (int64_t i = 0; i < M * N; ++i)
    ASSERT_NEAR(got[i], want[i], 1e-10 * scale) << "element " << i;  // float64 throughout, well-conditioned H

  // The chunked float32 statistics give the same E and D1 as the direct sums.
  LinearStats stats(N);
  std::vector<float> xq_f(xq.begin(), xq.end()), x_f(x.begin(), x.end()), dh_f(dh.begin(), dh.end());
  stats.accumulate(*be, xq_f.data(), x_f.data(), T, 2);  // 2 sequences: scale 2/2 = 1
  stats.accumulate_residual(*be, dh_f.data(), xq_f.data(), T, M);
  const Mat e_stats = stats.residual(), d1_stats = stats.cross();
  for (int64_t i = 0; i < M * N; ++i) EXPECT_NEAR(e_stats[i], e[i], 1e-4 * (1 + std::fabs(e[i])));  // fp32 chunk sums
  for (int64_t i = 0; i < N * N; ++i) EXPECT_NEAR(d1_stats[i], d1[i], 1e-4 * (1 + std::fabs(d1[i])));
}

TEST(Loaq, TokenScalesAreTheRmsNormFactors) {
  const float h[] = {1, 2, 3, 0, 0, 0};
  const float y[] = {1, 0, -1, 3, 4, 0};
  float s[2];
  loaq_token_scales(h, y, 2, 3, 1e-6, s);
  EXPECT_NEAR(s[0], 1.0 / std::sqrt((4.0 + 4.0 + 4.0) / 3 + 1e-6), 1e-6);
  EXPECT_NEAR(s[1], 1.0 / std::sqrt((9.0 + 16.0) / 3 + 1e-6), 1e-6);
}

}  // namespace
}  // namespace streamq
