// The float32 CPU twin of the CUDA sweep (kernels/cpu/gptq_sweep.h)
// against src/methods' float64 gptq_quantize, on fresh random layers with a
// damped random SPD H, over every option the float32 sweeps support. Both
// sides get the same float-rounded inputs (W, U, P1, P2), so only arithmetic
// precision differs. The twin's loops run in float64 first: that must match
// the methods sweep to rounding, which isolates algorithm from precision.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "tests/support/gptq_sweep_adapter.h"
#include "kernels/backend.h"
#include "kernels/cpu/gptq_sweep.h"
#include "src/methods/gptq.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using test::SweepCase;

// Float64 loops vs the float64 methods sweep: they differ in summation order
// only (~1e-15 relative, grown by H's conditioning), far below any rounding
// decision's margin (a tie within 1e-13 is a ~1e-12 event per decision), so
// codes and grids must be identical; then q = s (code - z) is exact in float
// (fp16 s times an integer below 2^9) and must be identical too. A wrong
// index or term is a whole quantization step off.

// Float32 vs float64: the kSweep32* bounds of gptq_sweep_adapter.h.

struct Prepared {
  test::SweepLayer layer;
  std::vector<double> w;  // float-rounded W
  FactoredHessian f;      // float-rounded U, P1, P2
  QuantResult ref;        // float64 methods sweep on those inputs
  test::Sweep32Inputs in;
};

Prepared prepare(Backend& be, std::mt19937_64& rng, const SweepCase& c) {
  Prepared p;
  p.layer = test::random_sweep_layer(rng, c.m, c.n, c.dead, 0.2);
  p.w = test::rounded_to_float(p.layer.w);
  p.f = test::rounded_to_float(
      factor_hessian(be, p.layer.h, c.cfg.needs_fp_flow() ? &p.layer.cross : nullptr, c.n, c.cfg,
                     CompensationForm::Unfolded));
  p.ref = gptq_quantize(be, p.w.data(), c.m, c.n, p.f, c.cfg);
  p.in = test::make_sweep32_inputs(p.w.data(), c.m, c.n, p.f, c.cfg);
  return p;
}

TEST(GptqSweep32, Float64LoopsEqualMethodsSweep) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  for (const SweepCase& c : test::sweep_cases()) {
    SCOPED_TRACE(c.name());
    const Prepared p = prepare(*be, rng, c);
    const SweepProblem prob = p.in.problem();
    test::Sweep32Result got = test::make_sweep32_result(prob);
    cpu_gptq_sweep64(prob, got.output());
    const test::SweepAgreement ag =
        test::compare_sweep_codes(got, p.ref.codes, p.ref.dequant, p.ref.scales, p.ref.zeros, c.m, c.n);
    ASSERT_TRUE(ag.bad.empty()) << ag.bad;
    ASSERT_EQ(ag.agree, ag.total) << "codes differ";
    ASSERT_EQ(got.g_idx, p.ref.g_idx);
    ASSERT_EQ(got.scales.size(), p.ref.scales.size());
    for (size_t i = 0; i < got.scales.size(); ++i) {
      ASSERT_EQ(static_cast<double>(got.scales[i]), p.ref.scales[i]) << "group*rows+row " << i;  // fp16 values
      ASSERT_EQ(static_cast<double>(got.zeros[i]), p.ref.zeros[i]) << "group*rows+row " << i;    // integers
    }
  }
}

TEST(GptqSweep32, Float32TracksFloat64Sweep) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  int64_t agree = 0, total = 0;
  double worst_case_agreement = 1, worst_obj = 0, obj32_sum = 0, obj64_sum = 0;
  for (const SweepCase& c : test::sweep_cases()) {
    SCOPED_TRACE(c.name());
    const Prepared p = prepare(*be, rng, c);
    const SweepProblem prob = p.in.problem();
    test::Sweep32Result got = test::make_sweep32_result(prob);
    cpu_gptq_sweep32(prob, got.output());
    ASSERT_EQ(got.g_idx, p.ref.g_idx);
    for (size_t i = 0; i < got.scales.size(); ++i) ASSERT_TRUE(std::isfinite(got.scales[i]) && got.scales[i] > 0);
    for (int64_t i = 0; i < c.m * c.n; ++i) ASSERT_LE(got.codes[i], (1 << c.cfg.bits) - 1);
    const test::SweepAgreement ag =
        test::compare_sweep_codes(got, p.ref.codes, p.ref.dequant, p.ref.scales, p.ref.zeros, c.m, c.n);
    ASSERT_TRUE(ag.bad.empty()) << ag.bad;
    agree += ag.agree;
    total += ag.total;
    const double case_agreement = ag.fraction();
    const double obj32 = test::h_weighted_error(p.w, got.q, p.layer.h, c.m, c.n);
    const double obj64 = test::h_weighted_error(p.w, p.ref.dequant, p.layer.h, c.m, c.n);
    EXPECT_GE(case_agreement, test::kSweep32MinCaseCodeAgreement);
    EXPECT_LE(std::fabs(obj32 / obj64 - 1), test::kSweep32MaxObjectiveRel) << obj32 << " vs " << obj64;
    worst_case_agreement = std::min(worst_case_agreement, case_agreement);
    worst_obj = std::max(worst_obj, std::fabs(obj32 / obj64 - 1));
    obj32_sum += obj32 / obj64;  // each case weighs the same
    obj64_sum += 1;
  }
  const double agreement = static_cast<double>(agree) / static_cast<double>(total);
  const double pooled_obj = std::fabs(obj32_sum / obj64_sum - 1);
  std::printf("float32 twin vs float64 sweep: codes agree %.5f (worst case %.5f), objective: worst case %.2e, "
              "pooled %.2e\n", agreement, worst_case_agreement, worst_obj, pooled_obj);
  EXPECT_GE(agreement, test::kSweep32MinCodeAgreement);
  EXPECT_LE(pooled_obj, test::kSweep32MaxPooledObjectiveRel);
}

// Block-size invariance of the exact variant, through the twin's own loops:
// it exercises the cross-block panels and the pending updates that a group
// starting mid-block owes its columns past the block.
TEST(GptqSweep32, Float64LoopsAreBlocksizeInvariant) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  SweepCase c{23, 150, QuantConfig{}, true};
  c.cfg.method = MethodKind::Gptaq;
  c.cfg.cae = true;
  c.cfg.bits = 3;
  c.cfg.group = 20;
  c.cfg.act_order = true;
  c.cfg.clip = ClipSearch::Mse;
  const Prepared p = prepare(*be, rng, c);
  test::Sweep32Inputs in = p.in;
  in.cfg.blocksize = 128;
  SweepProblem prob = in.problem();
  test::Sweep32Result base = test::make_sweep32_result(prob);
  cpu_gptq_sweep64(prob, base.output());
  for (int64_t bs : {1, 7, 20, 64, 127}) {
    prob.blocksize = bs;
    test::Sweep32Result other = test::make_sweep32_result(prob);
    cpu_gptq_sweep64(prob, other.output());
    // Same codes and grids make q exact (see above): all must be identical.
    ASSERT_EQ(other.codes, base.codes) << "blocksize " << bs;
    ASSERT_EQ(other.q, base.q) << "blocksize " << bs;
    ASSERT_EQ(other.scales, base.scales) << "blocksize " << bs;
    ASSERT_EQ(other.zeros, base.zeros) << "blocksize " << bs;
  }
}

TEST(GptqSweep32, RejectsBadProblemsAndReportsNonFiniteWeights) {
  std::mt19937_64 rng(7);
  auto be = make_cpu_backend();
  SweepCase c{5, 20, QuantConfig{}, false};
  c.cfg.group = 8;
  const Prepared p = prepare(*be, rng, c);
  test::Sweep32Inputs in = p.in;
  const SweepProblem good = in.problem();
  test::Sweep32Result r = test::make_sweep32_result(good);
  const auto expect_throw = [&](SweepProblem bad, const char* what) {
    EXPECT_THROW(cpu_gptq_sweep32(bad, r.output()), InternalError) << what;
  };
  SweepProblem bad = good;
  bad.grid.bits = 9;
  expect_throw(bad, "9 bits");
  bad = good;
  bad.blocksize = kSweepMaxBlock + 1;
  expect_throw(bad, "block too wide");
  bad = good;
  bad.group = 0;
  expect_throw(bad, "group 0");
  std::vector<int32_t> dup = in.perm;
  dup[1] = dup[0];
  bad = good;
  bad.perm = dup.data();
  expect_throw(bad, "perm not a permutation");
  QuantConfig two_stage = c.cfg;
  two_stage.clip = ClipSearch::TwoStage;
  EXPECT_THROW(test::sweep_grid_from(two_stage), InternalError);
  QuantConfig official = c.cfg;
  official.variant = Variant::Official;
  EXPECT_THROW(test::sweep_grid_from(official), InternalError);

  // A NaN weight is reported at its source, naming its row and column.
  in.w[3 * 20 + 11] = std::nanf("");
  try {
    cpu_gptq_sweep32(in.problem(), r.output());
    FAIL() << "expected a throw";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("row 3, column 11"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace streamq
