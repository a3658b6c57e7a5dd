// The CPU backend's GEMM, factorizations, elementwise ops and RoPE against
// naive float64 references on fresh random inputs (attention is in
// test_backend_cpu_attention.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <memory>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "tests/support/backend_test_util.h"

namespace streamq::test {
namespace {

// GEMM error normalized by |alpha||op(A)||op(B)| + |beta||C| (the result itself
// may cancel): Higham's bound is (k+2)u with u = eps/2, so (k+2)eps has 2x slack.
double gemm_tolerance(int64_t k, double eps) { return static_cast<double>(k + 2) * eps; }
// rmsnorm: float rounding of 1/rms, x*inv and *w, each <= eps/2 relative.
constexpr double kRmsnormTol = 4 * kF32Eps;
// swiglu: expf (<= 1 ulp in glibc), 1+e, the divide and the multiply.
constexpr double kSwigluTol = 4 * kF32Eps;
// rope: two products and a sum per element of a norm-preserving rotation.
constexpr double kRopeTol = 4 * kF32Eps;
// Factor checks on matrices with condition number <= ~5, in double.
constexpr double kFactorTol = 1e-10;

template <typename T>
void check_gemm(std::mt19937_64& rng, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                T beta, double tol_eps) {
  PaddedGemm<T> g = random_padded_gemm(rng, ta, tb, m, n, k, beta);
  SCOPED_TRACE(g.describe());
  make_cpu_backend()->gemm(ta, tb, m, n, k, g.alpha, g.a.data(), g.lda, g.b.data(), g.ldb, beta, g.c.data(),
                           g.ldc);
  ASSERT_TRUE(g.padding_untouched(g.c));
  EXPECT_LE(relative_error(g.dense(g.c).data(), g.ref.data(), g.mag.data(), m * n), gemm_tolerance(k, tol_eps));
}

TEST(BackendCpu, NameIsCpu) { EXPECT_EQ(make_cpu_backend()->name(), "cpu"); }

TEST(BackendGemm, F32AllTransposesOddShapes) {
  STREAMQ_SEEDED_RNG(rng);
  for (Trans ta : {Trans::N, Trans::T})
    for (Trans tb : {Trans::N, Trans::T})
      for (int64_t m : {1, 7, 33, 130})
        for (int64_t n : {1, 7, 33, 130})
          for (int64_t k : {1, 7, 33, 130}) {
            check_gemm<float>(rng, ta, tb, m, n, k, 0.0f, kF32Eps);
            check_gemm<float>(rng, ta, tb, m, n, k, -0.75f, kF32Eps);
          }
}

TEST(BackendGemm, F64AllTransposesOddShapes) {
  STREAMQ_SEEDED_RNG(rng);
  for (Trans ta : {Trans::N, Trans::T})
    for (Trans tb : {Trans::N, Trans::T})
      for (int64_t m : {1, 7, 33, 130})
        for (int64_t n : {1, 7, 33, 130})
          for (int64_t k : {1, 7, 33, 130}) {
            check_gemm<double>(rng, ta, tb, m, n, k, 0.0, kF64Eps);
            check_gemm<double>(rng, ta, tb, m, n, k, -0.75, kF64Eps);
          }
}

TEST(BackendGemm, ZeroKScalesCAndBadStrideThrows) {
  auto be = make_cpu_backend();
  std::vector<float> c = poisoned<float>(6);
  be->gemm(Trans::N, Trans::N, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.0f, c.data(), 3);
  for (float x : c) EXPECT_EQ(x, 0.0f);
  std::vector<float> a(6), b(6);
  EXPECT_THROW(be->gemm(Trans::N, Trans::N, 2, 3, 3, 1.0f, a.data(), 2, b.data(), 3, 0.0f,
                        c.data(), 3),
               InternalError);
}

// H = B B^T / n + I: eigenvalues in [1, 5], so every factor is well conditioned.
std::vector<double> random_spd(std::mt19937_64& rng, int64_t n) {
  const std::vector<double> b = random_normal<double>(rng, n * n);
  std::vector<double> h(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < n; ++p) s += b[i * n + p] * b[j * n + p];
      h[i * n + j] = s / double(n) + (i == j ? 1.0 : 0.0);
    }
  return h;
}

// max |X Y - I| for row-major n x n X and Y; transpose_x uses X^T.
double max_dev_from_identity(const std::vector<double>& x, const std::vector<double>& y,
                             int64_t n, bool transpose_x) {
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < n; ++p) s += (transpose_x ? x[p * n + i] : x[i * n + p]) * y[p * n + j];
      worst = std::max(worst, std::abs(s - (i == j ? 1.0 : 0.0)));
    }
  return std::isnan(worst) ? INFINITY : worst;
}

void expect_strict_triangle_zero(const std::vector<double>& a, int64_t n, bool upper) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = upper ? i + 1 : 0; j < (upper ? n : i); ++j) {
      ASSERT_EQ(a[i * n + j], 0.0) << "at (" << i << ", " << j << ")";
    }
  }
}

TEST(BackendLinalg, CholeskyAndTriangularInverse) {
  STREAMQ_SEEDED_RNG(rng);
  auto be = make_cpu_backend();
  for (int64_t n : {1, 7, 33, 130}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<double> h = random_spd(rng, n);
    std::vector<double> l = h;
    ASSERT_TRUE(be->cholesky_lower(l.data(), n));
    expect_strict_triangle_zero(l, n, /*upper=*/true);
    double worst = 0.0;  // |L L^T - H|
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t p = 0; p < n; ++p) s += l[i * n + p] * l[j * n + p];
        worst = std::max(worst, std::abs(s - h[i * n + j]));
      }
    EXPECT_LE(worst, kFactorTol);
    std::vector<double> l_inv = l;
    be->invert_lower_triangular(l_inv.data(), n);
    expect_strict_triangle_zero(l_inv, n, /*upper=*/true);
    EXPECT_LE(max_dev_from_identity(l_inv, l, n, false), kFactorTol);
  }
}

TEST(BackendLinalg, InverseUpperFactorGivesHinvEqualsUtU) {
  STREAMQ_SEEDED_RNG(rng);
  auto be = make_cpu_backend();
  for (int64_t n : {1, 2, 7, 33, 130, 257}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<double> h = random_spd(rng, n);
    std::vector<double> u = h;
    ASSERT_TRUE(be->inverse_upper_factor(u.data(), n));
    expect_strict_triangle_zero(u, n, /*upper=*/false);
    for (int64_t i = 0; i < n; ++i) EXPECT_GT(u[i * n + i], 0.0);
    // U^T U H == I, computed as U^T (U H).
    std::vector<double> uh(n * n, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = i; p < n; ++p)
        for (int64_t j = 0; j < n; ++j) uh[i * n + j] += u[i * n + p] * h[p * n + j];
    EXPECT_LE(max_dev_from_identity(u, uh, n, /*transpose_x=*/true), kFactorTol);
  }
}

TEST(BackendLinalg, NotPositiveDefiniteReturnsFalse) {
  STREAMQ_SEEDED_RNG(rng);
  auto be = make_cpu_backend();
  const int64_t n = 33;
  std::vector<double> h = random_spd(rng, n);
  for (int64_t i = 0; i < n; ++i) h[i * n + i] -= 10.0;  // eigenvalues now in [-9, -5]
  std::vector<double> a = h;
  EXPECT_FALSE(be->cholesky_lower(a.data(), n));
  a = h;
  EXPECT_FALSE(be->inverse_upper_factor(a.data(), n));
  std::vector<double> nan_h = random_spd(rng, n);
  nan_h[5 * n + 3] = nan_h[3 * n + 5] = NAN;  // non-finite input is an error, not "not PD"
  EXPECT_THROW(be->inverse_upper_factor(nan_h.data(), n), InternalError);
}

TEST(BackendElementwise, RmsnormMatchesReference) {
  STREAMQ_SEEDED_RNG(rng);
  auto be = make_cpu_backend();
  const float eps = 1e-5f;
  for (auto [rows, dim] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {300, 64}, {17, 4096}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << rows << " dim=" << dim);
    const std::vector<float> x = random_normal<float>(rng, rows * dim, 3.0);
    const std::vector<float> w = random_normal<float>(rng, dim);
    std::vector<double> ref(rows * dim);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
      const double rms = std::sqrt(ss / double(dim) + double(eps));
      for (int64_t i = 0; i < dim; ++i) ref[r * dim + i] = x[r * dim + i] / rms * w[i];
    }
    std::vector<float> y = poisoned<float>(rows * dim);
    be->rmsnorm(x.data(), w.data(), y.data(), rows, dim, eps);
    EXPECT_LE(relative_error(y, ref), kRmsnormTol);
    std::vector<float> in_place = x;  // y may alias x
    be->rmsnorm(in_place.data(), w.data(), in_place.data(), rows, dim, eps);
    EXPECT_TRUE(bitwise_equal(in_place, y));
  }
}

TEST(BackendElementwise, SwigluMatchesReference) {
  STREAMQ_SEEDED_RNG(rng);
  auto be = make_cpu_backend();
  for (int64_t n : {1, 7, 100003}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    std::vector<float> gate = random_normal<float>(rng, n, 4.0);
    const std::vector<float> up = random_normal<float>(rng, n);
    if (n > 2) gate[0] = -100.0f, gate[1] = 100.0f;  // exp(-g) overflow and saturation
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; ++i) ref[i] = gate[i] / (1.0 + std::exp(-double(gate[i]))) * up[i];
    std::vector<float> out = poisoned<float>(n);
    be->swiglu(gate.data(), up.data(), out.data(), n);
    EXPECT_LE(relative_error(out, ref), kSwigluTol);
    std::vector<float> g2 = gate, u2 = up;  // out may alias gate or up
    be->swiglu(g2.data(), up.data(), g2.data(), n);
    be->swiglu(gate.data(), u2.data(), u2.data(), n);
    EXPECT_TRUE(bitwise_equal(g2, out));
    EXPECT_TRUE(bitwise_equal(u2, out));
  }
}

// A single float addition is correctly rounded, and rounding the exact double
// sum to float gives the same value: the results must match bit for bit.
TEST(BackendElementwise, AddInplaceAndAddBiasAreExact) {
  STREAMQ_SEEDED_RNG(rng);
  auto be = make_cpu_backend();
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 7}, {257, 300}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << rows << " cols=" << cols);
    std::vector<float> y = random_normal<float>(rng, rows * cols);
    const std::vector<float> x = random_normal<float>(rng, rows * cols, 1e-3);
    const std::vector<float> bias = random_normal<float>(rng, cols);
    std::vector<float> want_add(rows * cols), want_bias(rows * cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t i = r * cols + j;
        want_add[i] = static_cast<float>(double(y[i]) + double(x[i]));
        want_bias[i] = static_cast<float>(double(want_add[i]) + double(bias[j]));
      }
    be->add_inplace(y.data(), x.data(), rows * cols);
    EXPECT_TRUE(bitwise_equal(y, want_add));
    be->add_bias(y.data(), bias.data(), rows, cols);
    EXPECT_TRUE(bitwise_equal(y, want_bias));
  }
}

// The rope table a Llama model builds: angle = pos * theta^(-2i/head_dim).
struct TestRopeTable {
  std::vector<float> cos, sin;
  RopeTable view;
  TestRopeTable(int64_t max_pos, int64_t head_dim) {
    const int64_t half = head_dim / 2;
    for (int64_t p = 0; p < max_pos; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(p) * std::pow(10000.0, -2.0 * double(i) / double(head_dim));
        cos.push_back(static_cast<float>(std::cos(angle)));
        sin.push_back(static_cast<float>(std::sin(angle)));
      }
    view = RopeTable{max_pos, half, cos.data(), sin.data()};
  }
};

TEST(BackendRope, MatchesComplexRotationOfHalfPairs) {
  STREAMQ_SEEDED_RNG(rng);
  auto be = make_cpu_backend();
  for (int64_t nseq : {1, 2})
    for (int64_t seqlen : {1, 5, 70})
      for (int64_t nheads : {1, 3})
        for (int64_t hd : {2, 8, 64}) {
          SCOPED_TRACE(testing::Message() << "nseq=" << nseq << " seqlen=" << seqlen
                                          << " nheads=" << nheads << " hd=" << hd);
          const TestRopeTable table(seqlen + 3, hd);
          const int64_t width = nheads * hd, n = nseq * seqlen * width, half = hd / 2;
          const std::vector<float> x0 = random_normal<float>(rng, n);
          std::vector<double> ref(n);
          for (int64_t row = 0; row < nseq * seqlen; ++row)
            for (int64_t h = 0; h < nheads; ++h)
              for (int64_t i = 0; i < half; ++i) {
                const int64_t lo = row * width + h * hd + i, pos = row % seqlen;
                // Pair (i, i + hd/2) as one complex number, rotated by e^{i angle}.
                const std::complex<double> z(x0[lo], x0[lo + half]);
                const std::complex<double> rot(table.cos[pos * half + i], table.sin[pos * half + i]);
                ref[lo] = (z * rot).real();
                ref[lo + half] = (z * rot).imag();
              }
          std::vector<float> x = x0;
          x.resize(n + 16, NAN);  // guard region after the tensor
          be->rope(x.data(), nseq, seqlen, nheads, hd, table.view);
          for (int64_t i = n; i < n + 16; ++i) ASSERT_TRUE(std::isnan(x[i])) << "guard written";
          x.resize(n);
          EXPECT_LE(relative_error(x, ref), kRopeTol);
        }
}

TEST(BackendRope, RejectsBadShapes) {
  auto be = make_cpu_backend();
  const TestRopeTable table(4, 8);
  std::vector<float> x(5 * 8);
  EXPECT_THROW(be->rope(x.data(), 1, 5, 1, 8, table.view), InternalError);  // seqlen > max_pos
  EXPECT_THROW(be->rope(x.data(), 1, 4, 1, 6, table.view), InternalError);  // head_dim != 2*half
}

}  // namespace
}  // namespace streamq::test
