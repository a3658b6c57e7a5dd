// The exact variant's folded compensation form (one triangular-panel PD,
// CAE's X X^T share folded into the error) against the unfolded P1/P2 form it
// replaced, and the triangular P product against the two full GEMMs, on fresh
// random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "src/methods/compensation.h"
#include "src/methods/gptq.h"
#include "tests/support/naive_reference.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// Both forms are float64 evaluations of the same per-column update; they
// differ by rounding (~1e-16 per operation) grown by H's conditioning over the
// sweep, as the blocked sweep and the naive reference do: the bound.
constexpr double kRelTol = 1e-12;
// The triangular product skips only exact-zero products, so it differs from
// the full GEMMs by summation order alone.
constexpr double kProductRelTol = 1e-13;

TEST(GptaqFolded, TriangularCompensationProductEqualsTwoFullGemms) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  auto be = make_cpu_backend();
  // Sizes below, at and across the panel widths (256 and 256..1024).
  for (int64_t n : {1, 5, 255, 256, 257, 600, 1100}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    std::vector<double> d(n * n), u(n * n, 0.0), t(n * n), full(n * n);
    for (auto& v : d) v = nd(rng);
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = a; b < n; ++b) u[a * n + b] = a == b ? 1.0 + std::fabs(nd(rng)) : nd(rng) / std::sqrt(double(n));
    be->gemm(Trans::N, Trans::T, n, n, n, 1.0, d.data(), n, u.data(), n, 0.0, t.data(), n);
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = 0; b <= a; ++b) t[a * n + b] = 0.0;
    be->gemm(Trans::N, Trans::N, n, n, n, 0.25, t.data(), n, u.data(), n, 0.0, full.data(), n);
    const std::vector<double> tri = compensation_matrix_triangular(*be, d, u, n, 0.25);
    double diff2 = 0, ref2 = 0;
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = 0; b < n; ++b) {
        const size_t i = a * n + b;
        if (b <= a) {
          ASSERT_EQ(tri[i], 0.0) << "not strictly upper at " << a << "," << b;
        }
        diff2 += (tri[i] - full[i]) * (tri[i] - full[i]);
        ref2 += full[i] * full[i];
      }
    EXPECT_LE(std::sqrt(diff2), kProductRelTol * std::sqrt(ref2) + 1e-300);
  }
}

struct FoldCase {
  MethodKind method;
  bool cae;
  CaeSource source;
  bool p1_original;
  double alpha1, alpha2;
};

TEST(GptaqFolded, FoldedFormEqualsUnfoldedAcrossGroupsActOrderAndBlocksizes) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const FoldCase cases[] = {
      {MethodKind::Gptaq, false, CaeSource::Xx, false, 0.25, 0.25},
      {MethodKind::Gptaq, true, CaeSource::Xx, false, 0.25, 0.25},
      {MethodKind::Gptaq, true, CaeSource::Xfx, false, 1.0, 1.0},
      {MethodKind::Gptaq, false, CaeSource::Xx, true, 1.0, 0.25},
      {MethodKind::Gptaq, true, CaeSource::Xx, true, 1.0, 0.5},
      {MethodKind::Gptq, true, CaeSource::Xx, false, 0.25, 0.25},
      {MethodKind::Gptq, true, CaeSource::Xfx, false, 0.25, 1.0},
  };
  // (m, n, group, blocksize): groups starting mid-block and spanning blocks,
  // partial last groups and blocks, per channel, and a width past the
  // triangular product's panels.
  const int64_t shapes[][4] = {{6, 45, 8, 7}, {5, 64, 16, 32}, {4, 70, -1, 128}, {6, 96, 20, 24}, {3, 520, 64, 128}};
  const int bits_cycle[] = {2, 3, 4, 8};
  double worst = 0;
  int n_case = 0;
  for (const auto& s : shapes) {
    const test::NaiveLayer L = test::random_naive_layer(rng, s[0], s[1], n_case % 2 == 0, 0.3);
    const std::vector<double> h = L.h(), cross = L.cross();
    double wmax = 0;
    for (double v : L.w) wmax = std::max(wmax, std::fabs(v));
    for (const FoldCase& fc : cases) {
      for (int opt = 0; opt < 4; ++opt) {
        QuantConfig cfg;
        cfg.method = fc.method;
        cfg.cae = fc.cae;
        cfg.cae_source = fc.source;
        cfg.p1_original = fc.p1_original;
        cfg.gptaq_alpha = fc.alpha1;
        cfg.cae_alpha = fc.alpha2;
        cfg.bits = bits_cycle[n_case % 4];
        cfg.group = s[2];
        cfg.blocksize = s[3];
        cfg.act_order = opt & 1;
        cfg.static_groups = (opt >> 1) & 1 && cfg.group > 0;
        cfg.sym = n_case % 3 != 0;
        cfg.clip = n_case % 5 == 0 ? ClipSearch::Mse : ClipSearch::MinMax;
        ++n_case;
        SCOPED_TRACE(cfg.describe() + " m=" + std::to_string(L.m) + " n=" + std::to_string(L.n));
        const std::vector<double>* c = cfg.needs_fp_flow() ? &cross : nullptr;
        const FactoredHessian folded = factor_hessian(*be, h, c, L.n, cfg, CompensationForm::Folded);
        const FactoredHessian unfolded = factor_hessian(*be, h, c, L.n, cfg, CompensationForm::Unfolded);
        ASSERT_EQ(folded.form, CompensationForm::Folded);
        ASSERT_TRUE(folded.p1.empty() && folded.p2.empty());
        // One matrix at most instead of two; none for GPTQ + CAE from X X^T.
        EXPECT_EQ(folded.pd.empty(), fc.method == MethodKind::Gptq && fc.source == CaeSource::Xx);
        const QuantResult a = gptq_quantize(*be, L.w.data(), L.m, L.n, folded, cfg);
        const QuantResult b = gptq_quantize(*be, L.w.data(), L.m, L.n, unfolded, cfg);
        for (size_t i = 0; i < a.dequant.size(); ++i) {
          worst = std::max(worst, std::fabs(a.dequant[i] - b.dequant[i]) / wmax);
          ASSERT_LE(std::fabs(a.dequant[i] - b.dequant[i]), kRelTol * wmax) << "element " << i;
        }
        EXPECT_EQ(a.scales.size(), b.scales.size());
        for (size_t i = 0; i < a.scales.size(); ++i)
          ASSERT_NEAR(a.scales[i], b.scales[i], kRelTol * std::fabs(b.scales[i]) + 1e-300) << "scale " << i;
      }
    }
  }
  std::cout << n_case << " cases, worst |folded - unfolded| / max|W| = " << worst << "\n";
}

// The identity behind the fold, at the matrix level (the sweep's outputs are
// on fp16-scaled grids, so equal codes there say less than 1e-12): P1 =
// gptaq_alpha PD and P2 = cae_alpha (PD - diag(U)^-1 U + I) for GPTAQ+CAE.
TEST(GptaqFolded, UnfoldedMatricesAreTheFoldedOnesRecombined) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  double worst = 0;
  for (int64_t n : {30, 97, 300}) {
    for (bool act_order : {false, true}) {
      const test::NaiveLayer L = test::random_naive_layer(rng, 2, n, act_order, 0.3);
      const std::vector<double> h = L.h(), cross = L.cross();
      QuantConfig cfg;
      cfg.method = MethodKind::Gptaq;
      cfg.cae = true;
      cfg.gptaq_alpha = 0.25;
      cfg.cae_alpha = 0.5;
      cfg.act_order = act_order;
      const FactoredHessian fo = factor_hessian(*be, h, &cross, n, cfg, CompensationForm::Folded);
      const FactoredHessian un = factor_hessian(*be, h, &cross, n, cfg, CompensationForm::Unfolded);
      ASSERT_EQ(fo.u, un.u);
      double d1 = 0, r1 = 0, d2 = 0, r2 = 0;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t k = 0; k < n; ++k) {
          const size_t i = j * n + k;
          const double ph = k > j ? -fo.u[i] / fo.u[j * n + j] : 0.0;  // triu(H U^T, 1) U
          const double p1 = cfg.gptaq_alpha * fo.pd[i], p2 = cfg.cae_alpha * (fo.pd[i] + ph);
          d1 += (p1 - un.p1[i]) * (p1 - un.p1[i]);
          r1 += un.p1[i] * un.p1[i];
          d2 += (p2 - un.p2[i]) * (p2 - un.p2[i]);
          r2 += un.p2[i] * un.p2[i];
        }
      worst = std::max({worst, std::sqrt(d1 / r1), std::sqrt(d2 / r2)});
      EXPECT_LE(std::sqrt(d1 / r1), kRelTol) << "P1, n=" << n;
      EXPECT_LE(std::sqrt(d2 / r2), kRelTol) << "P2, n=" << n;
    }
  }
  std::cout << "worst relative Frobenius difference of P1, P2: " << worst << "\n";
}

TEST(GptaqFolded, OfficialVariantIgnoresTheFoldedFormAndRejectsIt) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const test::NaiveLayer L = test::random_naive_layer(rng, 4, 40, false, 0.3);
  const std::vector<double> h = L.h(), cross = L.cross();
  QuantConfig cfg;
  cfg.method = MethodKind::Gptaq;
  cfg.cae = true;
  cfg.group = 8;
  cfg.blocksize = 16;
  cfg.variant = Variant::Official;
  const FactoredHessian f = factor_hessian(*be, h, &cross, L.n, cfg, CompensationForm::Folded);
  EXPECT_EQ(f.form, CompensationForm::Unfolded);
  EXPECT_FALSE(f.p1.empty() || f.p2.empty());
  // A folded factor handed to the official sweep, or one built for another method, is refused.
  QuantConfig exact = cfg;
  exact.variant = Variant::Exact;
  const FactoredHessian folded = factor_hessian(*be, h, &cross, L.n, exact);
  EXPECT_THROW(gptq_quantize(*be, L.w.data(), L.m, L.n, folded, cfg), InternalError);
  QuantConfig gptq_cae = exact;
  gptq_cae.method = MethodKind::Gptq;
  const FactoredHessian no_pd = factor_hessian(*be, h, nullptr, L.n, gptq_cae);
  EXPECT_THROW(gptq_quantize(*be, L.w.data(), L.m, L.n, no_pd, exact), InternalError);
}

}  // namespace
}  // namespace streamq
