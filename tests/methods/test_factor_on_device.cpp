// factor_hessian on a device (the factorization and the compensation
// products in float64 in the device's memory, staged from and back to the
// host) against the host backend, on fresh random layers: the emulated device
// runs the CPU kernels, so every matrix must come back bit for bit; its pool
// shows the at-most-three [n, n] float64 buffers the device plan counts.
#include <gtest/gtest.h>

#include <random>

#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#include "src/methods/gptq.h"
#include "tests/support/naive_reference.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

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
        EXPECT_TRUE(a.p1 == b.p1);
        EXPECT_TRUE(a.p2 == b.p2);
        EXPECT_TRUE(a.pd == b.pd);
        EXPECT_EQ(a.perm, b.perm);
        EXPECT_EQ(a.damp, b.damp);
        EXPECT_FALSE(b.u.empty());
        EXPECT_EQ(dev->memory().in_use(), 0u) << "every staging buffer returned";
        EXPECT_EQ(dev->memory().high_water(), static_cast<uint64_t>(fc.matrices * n * n) * sizeof(double));
      }
    }
  }
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
