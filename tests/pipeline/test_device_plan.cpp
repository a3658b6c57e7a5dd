// The device plan's factor decision and phase: factor_hessian's float64
// buffers ([n, n] for the widest group input: U, plus T and D-then-P with a
// compensation matrix) go to the device exactly when they fit beside the
// resident weights, and the plan counts them as a phase of their own.
#include <gtest/gtest.h>

#include "src/pipeline/device_plan.h"

namespace streamq {
namespace {

ModelConfig small_llama() {
  ModelConfig c;
  c.hidden = 64;
  c.intermediate = 352;  // down_proj's input: the widest
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 16;
  c.vocab = 128;
  c.max_pos = 256;
  return c;
}

TEST(DevicePlanFactor, FitsExactlyWhenTheWidestFactorFitsBesideTheWeights) {
  DevicePlanInput in;
  in.model = small_llama();
  in.seqlen = 64;
  in.limit = UINT64_MAX;
  const int64_t n = 352;
  for (const bool gptaq : {false, true}) {
    SCOPED_TRACE(gptaq ? "gptaq" : "gptq");
    in.p1 = gptaq;
    in.fp_flow = gptaq;
    // What stays resident, read off the plan's own breakdown.
    const DevicePlan plan = estimate_device_memory(in, 1);
    uint64_t resident = 0;
    for (const auto& [what, bytes] : plan.breakdown)
      if (what.find("weights") != std::string::npos || what == "RoPE tables") resident += bytes;
    const uint64_t factor = static_cast<uint64_t>(n * n) * 8 * (gptaq ? 3 : 1);
    in.limit = resident + factor;
    EXPECT_TRUE(device_factor_fits(in));
    in.limit = resident + factor - 1;
    EXPECT_FALSE(device_factor_fits(in));
    in.limit = UINT64_MAX;
  }
}

TEST(DevicePlanFactor, TheFactorIsAPhaseOfThePlan) {
  DevicePlanInput in;
  in.model = small_llama();
  in.seqlen = 16;  // few tokens: the n x n float64 factor dominates
  in.p1 = true;
  in.fp_flow = true;
  const DevicePlan without = estimate_device_memory(in, 1);
  in.factor_on_device = true;
  const DevicePlan with = estimate_device_memory(in, 1);
  EXPECT_EQ(with.peak_phase, "factor down") << with.describe();
  EXPECT_GT(with.peak_bytes, without.peak_bytes);
  uint64_t factor = 0;
  for (const auto& [what, bytes] : with.breakdown)
    if (what.find("factor") != std::string::npos) factor += bytes;
  EXPECT_EQ(factor, uint64_t{352} * 352 * 8 * 3) << with.describe();
}

}  // namespace
}  // namespace streamq
