// factor_hessian on a device (the factorization and the compensation
// products in float64 in the device's memory, staged from and back to the
// host) against the host backend, on fresh random layers: the emulated device
// runs the CPU kernels, so U and the folded form's PD come back bit for bit;
// the unfolded P1/P2, which the host forms with two full GEMMs and a device
// with the triangular products, agree to summation order. Its pool shows the
// at-most-three [n, n] float64 buffers the device plan counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#include "src/methods/gptq.h"
#include "tests/support/naive_reference.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// ||a - b|| / ||b|| (Frobenius); 0 for two empty matrices.
double relative_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

struct FactorCase {
  MethodKind method;
  bool cae;
  CaeSource source;
  CompensationForm form;
  int matrices;  // [n, n] float64 device buffers live at once at the peak
};

TEST(FactorOnDevice, EmulatedDeviceGivesTheHostsMatricesBitForBit) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto host = make_cpu_backend();
  const FactorCase cases[] = {
      {MethodKind::Gptq, false, CaeSource::Xx, CompensationForm::Folded, 1},      // U alone
      {MethodKind::Gptaq, false, CaeSource::Xx, CompensationForm::Folded, 3},     // U, T, D then PD
      {MethodKind::Gptaq, true, CaeSource::Xx, CompensationForm::Unfolded, 3},    // P1, then P2
      {MethodKind::Gptq, true, CaeSource::Xfx, CompensationForm::Unfolded, 3},
  };
  // Widths below, at and past the triangular product's 256-wide panels.
  for (const int64_t n : {7, 256, 300}) {
    const test::NaiveLayer L = test::random_naive_layer(rng, 4, n, n % 2 == 0, 0.3);
    const std::vector<double> h = L.h(), cross = L.cross();
    for (const FactorCase& fc : cases) {
      for (const bool act_order : {false, true}) {
        QuantConfig cfg;
        cfg.method = fc.method;
        cfg.cae = fc.cae;
        cfg.cae_source = fc.source;
        cfg.act_order = act_order;
        SCOPED_TRACE(cfg.describe() + " n=" + std::to_string(n));
        const std::vector<double>* c = cfg.needs_fp_flow() ? &cross : nullptr;
        auto dev = make_emulated_backend({.memory_bytes = uint64_t{64} << 20});  // its own high-water mark
        const FactoredHessian a = factor_hessian(*host, h, c, n, cfg, fc.form);
        const FactoredHessian b = factor_hessian(*dev, h, c, n, cfg, fc.form);
        EXPECT_TRUE(a.u == b.u);
        EXPECT_TRUE(a.pd == b.pd);
        EXPECT_EQ(a.p1.size(), b.p1.size());
        EXPECT_EQ(a.p2.size(), b.p2.size());
        // Summation order only, as the triangular-product test's bound
        // (test_gptaq_folded.cpp, kProductRelTol).
        EXPECT_LE(relative_difference(b.p1, a.p1), 1e-13);
        EXPECT_LE(relative_difference(b.p2, a.p2), 1e-13);
        EXPECT_EQ(a.perm, b.perm);
        EXPECT_EQ(a.damp, b.damp);
        EXPECT_FALSE(b.u.empty());
        EXPECT_EQ(dev->memory().in_use(), 0u) << "every staging buffer returned";
        EXPECT_EQ(dev->memory().high_water(), static_cast<uint64_t>(fc.matrices * n * n) * sizeof(double));
      }
    }
  }
}

// In float32 the staged path is the same on the host backend and the device
// (both run the CPU's float kernels): bit for bit again, at half the device
// bytes; against float64 the factor moves by float rounding grown by H's
// conditioning, and the sweep's codes barely move.
TEST(FactorOnDevice, Float32FactorIsTheSameOnHostAndDeviceAndNearFloat64) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto host = make_cpu_backend();
  const int64_t n = 300;
  const test::NaiveLayer L = test::random_naive_layer(rng, 4, n, false, 0.3);
  const std::vector<double> h = L.h(), cross = L.cross();
  QuantConfig cfg;
  cfg.method = MethodKind::Gptaq;
  cfg.act_order = true;
  auto dev = make_emulated_backend({.memory_bytes = uint64_t{64} << 20});
  const FactoredHessian a = factor_hessian(*host, h, &cross, n, cfg, CompensationForm::Unfolded, FactorPrecision::F32);
  const FactoredHessian b = factor_hessian(*dev, h, &cross, n, cfg, CompensationForm::Unfolded, FactorPrecision::F32);
  EXPECT_TRUE(a.u == b.u);
  EXPECT_TRUE(a.p1 == b.p1);
  EXPECT_EQ(dev->memory().high_water(), static_cast<uint64_t>(3 * n * n) * sizeof(float));
  const FactoredHessian r = factor_hessian(*host, h, &cross, n, cfg, CompensationForm::Unfolded);
  // random_naive_layer's H (+ 1% damping) has a condition number in the
  // hundreds: float32 rounding (6e-8) times n and that leaves ~1e-3 at worst.
  const double du = relative_difference(a.u, r.u), dp = relative_difference(a.p1, r.p1);
  std::printf("[factor-f32] n=%lld: U %.2e, P1 %.2e from float64\n", static_cast<long long>(n), du, dp);
  EXPECT_LE(du, 1e-3);
  EXPECT_LE(dp, 1e-3);
  EXPECT_GT(du, 0.0) << "float32 that equals float64 exactly was not float32";
}

// A Hessian that is not positive definite until damped: the retries re-stage
// it and end where the host's end.
TEST(FactorOnDevice, DampingRetriesAreTheHostsToo) {
  const int64_t n = 6;
  std::vector<double> h(n * n, 1.0);  // rank one: singular until damped enough
  for (int64_t i = 0; i < n; ++i) h[i * n + i] = 1.0;
  QuantConfig cfg;
  cfg.percdamp = 0;
  auto host = make_cpu_backend();
  auto dev = make_emulated_backend({.memory_bytes = uint64_t{1} << 20});
  const FactoredHessian a = factor_hessian(*host, h, nullptr, n, cfg);
  const FactoredHessian b = factor_hessian(*dev, h, nullptr, n, cfg);
  EXPECT_GT(a.cholesky_retries, 0);
  EXPECT_EQ(a.cholesky_retries, b.cholesky_retries);
  EXPECT_TRUE(a.u == b.u);
}

}  // namespace
}  // namespace streamq
