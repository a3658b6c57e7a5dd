// The GPTQ sweep as a Backend op seen from src/methods (sweep_problem.h):
// gptq_sweep_on_backend's QuantResult equals gptq_quantize's on the same
// float-rounded inputs in float64 (codes, values, grids, g_idx, order,
// damping), what the backend sweep covers is said up front, and a folded
// factor or a mismatched width is refused.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "kernels/backend.h"
#include "src/core/error.h"
#include "src/methods/gptq.h"
#include "src/methods/sweep_problem.h"
#include "tests/support/gptq_sweep_adapter.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

TEST(SweepProblem, Float64OpResultEqualsMethodsSweepOnTheSameInputs) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::unique_ptr<Backend> be = make_cpu_backend();
  const std::vector<test::SweepCase> cases = test::sweep_cases();
  for (size_t i = 0; i < cases.size(); i += 5) {  // every fifth: each option still appears
    const test::SweepCase& c = cases[i];
    SCOPED_TRACE(c.name());
    const test::SweepLayer layer = test::random_sweep_layer(rng, c.m, c.n, c.dead, 0.2);
    const std::vector<double> w = test::rounded_to_float(layer.w);
    const FactoredHessian f = test::rounded_to_float(factor_hessian(
        *be, layer.h, c.cfg.needs_fp_flow() ? &layer.cross : nullptr, c.n, c.cfg, CompensationForm::Unfolded));
    const QuantResult want = gptq_quantize(*be, w.data(), c.m, c.n, f, c.cfg);
    const uint64_t in_use = be->memory().in_use();
    const QuantResult got = gptq_sweep_on_backend(*be, w.data(), c.m, c.n, f, c.cfg, SweepPrecision::F64);
    EXPECT_EQ(be->memory().in_use(), in_use) << "the op's buffers are returned";
    // Summation order alone differs (see the op table's gptq_sweep64 row):
    // identical codes and grids, and then q is exact.
    EXPECT_EQ(got.codes, want.codes);
    EXPECT_EQ(got.dequant, want.dequant);
    EXPECT_EQ(got.scales, want.scales);
    EXPECT_EQ(got.zeros, want.zeros);
    EXPECT_EQ(got.g_idx, want.g_idx);
    EXPECT_EQ(got.perm, want.perm);
    EXPECT_EQ(got.rows, want.rows);
    EXPECT_EQ(got.ngroups, want.ngroups);
    EXPECT_EQ(got.damp, want.damp);
    EXPECT_EQ(got.dead_inputs, want.dead_inputs);
    EXPECT_GT(got.working_bytes, 0u);
  }
}

TEST(SweepProblem, CoverageIsDeclaredAndWrongFactorsAreRefused) {
  QuantConfig cfg;
  EXPECT_TRUE(sweep_op_supports(cfg));
  QuantConfig two_stage = cfg, official = cfg, free_min = cfg;
  two_stage.clip = ClipSearch::TwoStage;
  official.variant = Variant::Official;
  free_min.free_min = true;
  free_min.sym = false;
  for (const QuantConfig& c : {two_stage, official, free_min}) {
    EXPECT_FALSE(sweep_op_supports(c)) << c.describe();
    EXPECT_THROW(sweep_grid_from(c), InternalError) << c.describe();
  }
  std::mt19937_64 rng(3);
  const std::unique_ptr<Backend> be = make_cpu_backend();
  const test::SweepLayer layer = test::random_sweep_layer(rng, 4, 12, false, 0.2);
  const FactoredHessian folded = factor_hessian(*be, layer.h, nullptr, 12, cfg, CompensationForm::Folded);
  EXPECT_THROW(make_sweep_host_inputs(layer.w.data(), 4, 12, folded, cfg), InternalError);
  const FactoredHessian unfolded = factor_hessian(*be, layer.h, nullptr, 12, cfg, CompensationForm::Unfolded);
  EXPECT_THROW(make_sweep_host_inputs(layer.w.data(), 4, 11, unfolded, cfg), InternalError);
}

}  // namespace
}  // namespace streamq
