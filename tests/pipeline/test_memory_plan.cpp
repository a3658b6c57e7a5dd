// The memory plan: choices move the right way as the limit grows, the
// not-even-the-minimum error, the unlimited case, and the estimate as an
// upper bound of what the parts it names really allocate.
#include <algorithm>
#include <gtest/gtest.h>

#include "src/model/architecture.h"
#include "src/pipeline/memory_plan.h"

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
  in.mapped_block_bytes = 14ull << 20;
  in.mapped_other_bytes = 4ull << 20;
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

// A resumable job keeps its activations in memory when they fit, mirrored to
// the workdir: the plan counts what memory placement holds plus the mirror's
// compressed store and write-behind queue, names it, and falls back to disk
// (or a shallower queue) under a tighter limit.
TEST(MemoryPlan, WorkdirJobMirrorsMemoryAndCountsTheWriter) {
  MemoryPlanInput in = input();
  in.mirror_to_workdir = true;
  const MemoryPlan p = plan_memory(in);
  EXPECT_EQ(p.placement, Placement::MemoryMirrored);
  EXPECT_EQ(p.seqs_per_chunk, 16);
  EXPECT_EQ(p.prefetch_depth, 2);
  EXPECT_TRUE(p.reason.empty()) << p.reason;
  EXPECT_NE(p.describe().find("activations memory-mirrored"), std::string::npos) << p.describe();
  EXPECT_NE(p.describe().find("workdir"), std::string::npos) << p.describe();

  const uint64_t chunk = 4ull * 8192 * 512;
  uint64_t queue = 0, store = 0, held = 0;
  for (const auto& [name, b] : p.breakdown) {
    if (name.rfind("chunks in flight (workdir write-behind", 0) == 0) queue = b;
    if (name.rfind("compressed-store buffers", 0) == 0) store = b;
    if (name.rfind("activations held", 0) == 0) held = b;
  }
  EXPECT_EQ(queue, 2 * 2 * chunk);  // depth chunks each way (writes; a resumed boundary's reads)
  EXPECT_GE(store, static_cast<uint64_t>(in.store.slabs) * in.store.slab_bytes);
  const MemoryPlan mem = estimate_memory(in, Placement::Memory, 16, 0);
  const MemoryPlan disk = estimate_memory(in, Placement::Disk, 16, 2);
  for (const auto& [name, b] : mem.breakdown) {
    if (name.rfind("activations held", 0) == 0 && mem.peak_phase == p.peak_phase) {
      EXPECT_EQ(held, b);
    }
  }
  EXPECT_GE(p.peak_bytes, mem.peak_bytes + queue + store);
  EXPECT_GT(p.peak_bytes, disk.peak_bytes);  // the disk placement's buffers and the boundaries

  // A little less room: a shallower write-behind queue before smaller chunks.
  in.host_limit = estimate_memory(in, Placement::MemoryMirrored, 16, 1).peak_bytes;
  const MemoryPlan shallow = plan_memory(in);
  EXPECT_EQ(shallow.placement, Placement::MemoryMirrored);
  EXPECT_EQ(shallow.seqs_per_chunk, 16);
  EXPECT_EQ(shallow.prefetch_depth, 1);
  EXPECT_NE(shallow.reason.find("prefetch depth 1 instead of 2"), std::string::npos) << shallow.reason;

  // Not even one sequence per chunk mirrored: disk, saying what memory needed.
  const MemoryPlan mirror_min = estimate_memory(in, Placement::MemoryMirrored, 1, 0);
  in.host_limit = mirror_min.peak_bytes - 1;
  const MemoryPlan d = plan_memory(in);
  EXPECT_EQ(d.placement, Placement::Disk);
  EXPECT_NE(d.reason.find(format_size(mirror_min.peak_bytes)), std::string::npos) << d.reason;

  // --activations memory with a workdir is the mirror, and it must fit.
  in.placement = Placement::Memory;
  EXPECT_THROW(plan_memory(in), BudgetError);
  in.host_limit = kUnlimitedBytes;
  EXPECT_EQ(plan_memory(in).placement, Placement::MemoryMirrored);
  // --activations disk with a workdir stays on disk.
  in.placement = Placement::Disk;
  EXPECT_EQ(plan_memory(in).placement, Placement::Disk);
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
  in.mapped_block_bytes = 0;
  in.mapped_other_bytes = 0;
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

// A model whose q,k,v group dominates the quantize phase (wide hidden, narrow
// MLP), so concurrency moves the peak.
MemoryPlanInput qkv_heavy_input() {
  MemoryPlanInput in = input();
  in.model.hidden = 1024;
  in.model.intermediate = 256;
  in.model.heads = 16;
  in.model.kv_heads = 16;
  in.model.head_dim = 64;
  in.nsamples = 8;
  in.seqlen = 256;
  in.chunk_tokens = 2048;
  return in;
}

TEST(MemoryPlan, UnlimitedGivesFullLinearConcurrencyAndARequestCaps) {
  MemoryPlanInput in = qkv_heavy_input();
  EXPECT_EQ(max_group_linears(in.model), 3);
  const MemoryPlan p = plan_memory(in);
  EXPECT_EQ(p.linear_concurrency, 3);
  EXPECT_NE(p.describe().find("linear concurrency 3"), std::string::npos) << p.describe();
  EXPECT_NE(p.peak_phase.find("q_proj + "), std::string::npos) << p.peak_phase;
  in.linear_concurrency = 2;
  EXPECT_EQ(plan_memory(in).linear_concurrency, 2);
  in.linear_concurrency = 9;  // more than any group has
  EXPECT_EQ(plan_memory(in).linear_concurrency, 3);
}

// The chunk size is the only choice that changes the output bytes: under
// any limit where some placement fits the requested chunk, the plan keeps the
// chunk (moving the boundaries to disk if it must) rather than shrink it to
// stay in memory.
TEST(MemoryPlan, TightLimitMovesToDiskBeforeShrinkingTheChunk) {
  const MemoryPlanInput base = input();
  const int64_t want_spc = base.chunk_tokens / base.seqlen;
  const uint64_t disk_full = estimate_memory(base, Placement::Disk, want_spc, 0, 1).peak_bytes;
  const uint64_t mem_full = estimate_memory(base, Placement::Memory, want_spc, 0, 1).peak_bytes;
  const uint64_t mem_small = estimate_memory(base, Placement::Memory, 1, 0, 1).peak_bytes;
  // The case the order decides: memory fits only with a smaller chunk while
  // disk fits the requested one. Without it this test could not fail.
  ASSERT_LT(disk_full, mem_full);
  ASSERT_LT(mem_small, mem_full);
  int decided = 0;
  const uint64_t lo = std::min(disk_full, mem_small), hi = mem_full + mem_full / 50;
  for (uint64_t limit = lo; limit <= hi; limit += (hi - lo) / 300 + 1) {
    MemoryPlanInput in = base;
    in.host_limit = limit;
    const MemoryPlan p = plan_memory(in);
    EXPECT_LE(p.peak_bytes, limit);
    if (disk_full <= limit) {
      EXPECT_EQ(p.seqs_per_chunk, want_spc) << limit << ": " << p.reason;
      if (mem_full > limit) {
        EXPECT_EQ(p.placement, Placement::Disk) << limit;
        decided += mem_small <= limit;
      }
    }
  }
  EXPECT_GT(decided, 0) << "no limit where memory with a smaller chunk would also have fitted";
}

// Concurrency costs only speed; the chunk size changes the output bytes. A
// tight limit lowers concurrency first, and never shrinks the chunk while
// concurrency 1 with the requested chunk would fit.
TEST(MemoryPlan, TightLimitLowersConcurrencyBeforeTheChunk) {
  const MemoryPlanInput base = qkv_heavy_input();
  const int64_t want_spc = base.chunk_tokens / base.seqlen;
  const uint64_t c1 = estimate_memory(base, Placement::Memory, want_spc, 0, 1).peak_bytes;
  const uint64_t c2 = estimate_memory(base, Placement::Memory, want_spc, 0, 2).peak_bytes;
  const uint64_t c3 = estimate_memory(base, Placement::Memory, want_spc, 0, 3).peak_bytes;
  ASSERT_LT(c1, c2);
  ASSERT_LT(c2, c3);
  MemoryPlanInput in = base;
  in.host_limit = c2;
  MemoryPlan p = plan_memory(in);
  EXPECT_EQ(p.linear_concurrency, 2);
  EXPECT_EQ(p.seqs_per_chunk, want_spc);
  EXPECT_EQ(p.placement, Placement::Memory);
  EXPECT_NE(p.reason.find("linear concurrency 2 instead of 3"), std::string::npos) << p.reason;
  in.host_limit = c1;
  p = plan_memory(in);
  EXPECT_EQ(p.linear_concurrency, 1);
  EXPECT_EQ(p.seqs_per_chunk, want_spc);

  // Every limit from the minimum up: a smaller chunk only when concurrency 1
  // with the requested chunk does not fit in the placement chosen.
  const uint64_t least = estimate_memory(base, Placement::Disk, 1, 0, 1).peak_bytes;
  for (uint64_t limit = least; limit <= c3; limit += (c3 - least) / 200 + 1) {
    in.host_limit = limit;
    p = plan_memory(in);
    EXPECT_LE(p.peak_bytes, limit);
    if (p.seqs_per_chunk < want_spc) {
      EXPECT_EQ(p.linear_concurrency, 1) << limit;
      EXPECT_GT(estimate_memory(base, p.placement, want_spc, 0, 1).peak_bytes, limit);
    }
  }
}

// Released blocks leave one block of mapped weights resident: the estimate
// counts one block plus the tensors outside the blocks, whatever the depth.
TEST(MemoryPlan, CountsOneBlockOfMappedWeightsNotTheWholeModel) {
  MemoryPlanInput in = input();
  const uint64_t two_layers = estimate_memory(in, Placement::Disk, 4, 0).peak_bytes;
  in.model.layers = 40;  // 20x the mapped model, the same largest block
  EXPECT_EQ(estimate_memory(in, Placement::Disk, 4, 0).peak_bytes, two_layers);
  uint64_t mapped = 0;
  for (const auto& [name, b] : estimate_memory(in, Placement::Disk, 4, 0).breakdown)
    if (name.rfind("mapped model pages", 0) == 0) mapped = b;
  EXPECT_EQ(mapped, in.mapped_block_bytes + in.mapped_other_bytes);
  in.mapped_block_bytes += 10ull << 20;
  EXPECT_GE(estimate_memory(in, Placement::Disk, 4, 0).peak_bytes, two_layers + (10ull << 20));
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
