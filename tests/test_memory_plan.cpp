// The memory plan: choices move the right way as the limit grows, the
// not-even-the-minimum error, the unlimited case, and the estimate as an
// upper bound of what the parts it names really allocate.
#include <gtest/gtest.h>

#include "model/architecture.h"
#include "scheduler/memory_plan.h"

namespace streamq {
namespace {

ModelConfig small_model() {
  ModelConfig c;
  c.hidden = 512;
  c.intermediate = 1536;
  c.layers = 2;
  c.heads = 8;
  c.kv_heads = 8;
  c.head_dim = 64;
  c.vocab = 512;
  return c;
}

MemoryPlanInput input() {
  MemoryPlanInput in;
  in.model = small_model();
  in.nsamples = 64;
  in.seqlen = 512;
  in.chunk_tokens = 8192;
  in.prefetch_depth = 2;
  in.threads = 2;
  in.baseline_bytes = 12ull << 20;
  in.mapped_model_bytes = 29ull << 20;
  return in;
}

int placement_rank(Placement p) { return p == Placement::Memory ? 1 : 0; }

TEST(MemoryPlan, UnlimitedGivesMemoryAndTheRequestedChunk) {
  const MemoryPlan p = plan_memory(input());
  EXPECT_EQ(p.placement, Placement::Memory);
  EXPECT_EQ(p.seqs_per_chunk, 8192 / 512);
  EXPECT_EQ(p.nchunks, 4);
  EXPECT_TRUE(p.reason.empty()) << p.reason;
  uint64_t s = 0;
  for (const auto& [name, b] : p.breakdown) s += b;
  EXPECT_EQ(s, p.peak_bytes);
  EXPECT_NE(p.describe().find("activations memory"), std::string::npos) << p.describe();
}

TEST(MemoryPlan, LargerLimitNeverGivesASmallerChunkOrWorsePlacement) {
  for (const bool gptaq : {false, true}) {
    MemoryPlanInput in = input();
    if (gptaq) {
      in.quant.method = MethodKind::Gptaq;
      in.fp_stats = true;
    }
    const uint64_t top = plan_memory(in).peak_bytes;
    MemoryPlan prev;
    bool have_prev = false;
    // From below the minimum to past the unlimited plan's peak, in 1% steps.
    for (uint64_t limit = top / 4; limit <= top + top / 50; limit += top / 100) {
      in.host_limit = limit;
      MemoryPlan p;
      try {
        p = plan_memory(in);
      } catch (const BudgetError&) {
        EXPECT_FALSE(have_prev) << "a limit of " << limit << " failed after a smaller one fitted";
        continue;
      }
      EXPECT_LE(p.peak_bytes, limit);
      if (have_prev) {
        EXPECT_GE(placement_rank(p.placement), placement_rank(prev.placement)) << limit;
        if (p.placement == prev.placement) {
          EXPECT_GE(p.seqs_per_chunk, prev.seqs_per_chunk) << limit;
        }
      }
      prev = p;
      have_prev = true;
    }
    ASSERT_TRUE(have_prev);
    EXPECT_EQ(prev.placement, Placement::Memory);
  }
}

TEST(MemoryPlan, TightLimitPicksDiskSmallerChunksAndShallowerPrefetch) {
  MemoryPlanInput in = input();
  const MemoryPlan mem_min = estimate_memory(in, Placement::Memory, 1, 0);
  const MemoryPlan disk_full = estimate_memory(in, Placement::Disk, 16, 2);
  in.host_limit = std::min(mem_min.peak_bytes, disk_full.peak_bytes) - 1;
  const MemoryPlan p = plan_memory(in);
  EXPECT_EQ(p.placement, Placement::Disk);
  EXPECT_TRUE(p.seqs_per_chunk < 16 || p.prefetch_depth < 2);
  EXPECT_FALSE(p.reason.empty());
  EXPECT_NE(p.reason.find("--host-mem-limit"), std::string::npos) << p.reason;
}

TEST(MemoryPlan, BelowTheMinimumSaysWhatIsNeededAndTheLimit) {
  MemoryPlanInput in = input();
  const MemoryPlan min = estimate_memory(in, Placement::Disk, 1, 0);
  in.host_limit = min.peak_bytes - 1;
  try {
    plan_memory(in);
    FAIL() << "planned under the minimum";
  } catch (const BudgetError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("needs at least " + format_size(min.peak_bytes)), std::string::npos) << m;
    EXPECT_NE(m.find("--host-mem-limit is " + format_size(in.host_limit)), std::string::npos) << m;
    EXPECT_NE(m.find("baseline"), std::string::npos) << m;
    EXPECT_NE(m.find("block weights"), std::string::npos) << m;
  }
  in.host_limit = min.peak_bytes;  // exactly the minimum fits
  EXPECT_EQ(plan_memory(in).placement, Placement::Disk);
}

TEST(MemoryPlan, ForcedMemoryThatDoesNotFitSuggestsDisk) {
  MemoryPlanInput in = input();
  in.placement = Placement::Memory;
  in.host_limit = estimate_memory(in, Placement::Memory, 1, 0).peak_bytes - 1;
  try {
    plan_memory(in);
    FAIL();
  } catch (const BudgetError& e) {
    EXPECT_NE(std::string(e.what()).find("--activations disk"), std::string::npos) << e.what();
  }
}

// The estimate grows with what drives memory: chunk size, depth, samples,
// method matrices.
TEST(MemoryPlan, EstimateGrowsWithChunksDepthSamplesAndMethod) {
  MemoryPlanInput in = input();
  // Small chunks may not move the peak (quantizing down_proj can dominate); large ones do.
  EXPECT_LE(estimate_memory(in, Placement::Disk, 1, 0).peak_bytes,
            estimate_memory(in, Placement::Disk, 2, 0).peak_bytes);
  EXPECT_LT(estimate_memory(in, Placement::Disk, 1, 0).peak_bytes,
            estimate_memory(in, Placement::Disk, 64, 0).peak_bytes);
  EXPECT_LT(estimate_memory(in, Placement::Disk, 4, 0).peak_bytes,
            estimate_memory(in, Placement::Disk, 4, 2).peak_bytes);
  const uint64_t mem64 = estimate_memory(in, Placement::Memory, 4, 0).peak_bytes;
  in.nsamples = 128;
  EXPECT_LT(mem64, estimate_memory(in, Placement::Memory, 4, 0).peak_bytes);
  in.nsamples = 64;
  MemoryPlanInput cae = in;
  cae.quant.method = MethodKind::Gptaq;
  cae.quant.cae = true;
  cae.fp_stats = true;
  EXPECT_LT(estimate_memory(in, Placement::Disk, 1, 0).peak_bytes,
            estimate_memory(cae, Placement::Disk, 1, 0).peak_bytes);
}

// The named parts are at least what the code they stand for allocates: the
// Hessian-side figure is at least the float64 n x n matrices GPTQ keeps for
// the widest input (X^T X, its copy, the working copy, U).
TEST(MemoryPlan, MethodPartCoversTheWidestInputsMatrices) {
  MemoryPlanInput in = input();
  in.mapped_model_bytes = 0;
  in.baseline_bytes = 0;
  const MemoryPlan p = estimate_memory(in, Placement::Disk, 1, 0);
  const uint64_t n = static_cast<uint64_t>(in.model.intermediate);  // down_proj's input
  uint64_t method = 0, stats = 0;
  for (const auto& [name, b] : p.breakdown) {
    if (name.rfind("method working set", 0) == 0) method = b;
    if (name == "stats matrices") stats = b;
  }
  EXPECT_EQ(p.peak_phase, "quantize mlp.down_proj");
  EXPECT_GE(stats, 8 * n * n);
  EXPECT_GE(method, 3 * 8 * n * n);
}

TEST(MemoryPlan, CheckPlanComparesWithAMeasuredPeak) {
  MemoryPlan p;
  p.peak_bytes = 150;
  EXPECT_TRUE(check_plan(p, 100).within);
  EXPECT_FALSE(check_plan(p, 99).within);  // 1.52x: bound but loose
  EXPECT_TRUE(check_plan(p, 99).upper_bound);
  EXPECT_FALSE(check_plan(p, 151).upper_bound);
  EXPECT_NE(check_plan(p, 151).describe().find("UNDER"), std::string::npos);
}

}  // namespace
}  // namespace streamq
