// The CPU twin of the CUDA sweep (kernels/cpu/gptq_sweep.h) beyond the op
// table: the table (tests/kernels/test_backend_ops.cpp, gptq_sweep32/64 rows)
// holds Backend::gptq_sweep in float32 and float64 to src/methods' float64
// gptq_quantize over every option; here the twin's float64 loops are shown
// block-size invariant, and bad problems and non-finite weights are rejected.
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

struct Prepared {
  test::SweepLayer layer;
  std::vector<double> w;  // float-rounded W
  FactoredHessian f;      // float-rounded U, P1, P2
  SweepHostInputs in;
};

Prepared prepare(Backend& be, std::mt19937_64& rng, const SweepCase& c) {
  Prepared p;
  p.layer = test::random_sweep_layer(rng, c.m, c.n, c.dead, 0.2);
  p.w = test::rounded_to_float(p.layer.w);
  p.f = test::rounded_to_float(
      factor_hessian(be, p.layer.h, c.cfg.needs_fp_flow() ? &p.layer.cross : nullptr, c.n, c.cfg,
                     CompensationForm::Unfolded));
  p.in = make_sweep_host_inputs(p.w.data(), c.m, c.n, p.f, c.cfg);
  return p;
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
  SweepHostInputs in = p.in;
  in.cfg.blocksize = 128;
  SweepProblem prob = in.problem();
  test::Sweep32Result base = test::make_sweep32_result(prob);
  cpu_gptq_sweep64(prob, base.output());
  for (int64_t bs : {1, 7, 20, 64, 127}) {
    prob.blocksize = bs;
    test::Sweep32Result other = test::make_sweep32_result(prob);
    cpu_gptq_sweep64(prob, other.output());
    // Same codes and grids make q exact (fp16 s times an integer below 2^9 is exact in float): all must be identical.
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
  SweepHostInputs in = p.in;
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
  EXPECT_THROW(sweep_grid_from(two_stage), InternalError);
  QuantConfig official = c.cfg;
  official.variant = Variant::Official;
  EXPECT_THROW(sweep_grid_from(official), InternalError);

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
