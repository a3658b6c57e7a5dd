// How a quantization job fits a host memory limit: where the block-boundary
// activations live, how many sequences go in a chunk, how deep the I/O
// read-ahead/write-behind may go, and the peak resident memory that choice
// is expected to reach, part by part.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/store/activation_store.h"
#include "src/methods/quant_config.h"
#include "src/pipeline/block_learning.h"
#include "src/model/config.h"
#include "scheduler/memory_budget.h"

namespace streamq {

// MemoryMirrored: in memory, each boundary also written behind to the
// workdir's compressed store (a resumable job, io/store/mirrored_store.h).
enum class Placement { Auto, Memory, Disk, MemoryMirrored };
const char* to_string(Placement p);

// The spill store's slab pool (staged group inputs spilled to disk): its
// calls come from one chunk pass at a time, so a quarter of the job store's
// default pool keeps its reads and writes in flight at a quarter of the
// pinned bytes.
constexpr uint32_t kSpillStoreSlabs = 8;

struct MemoryPlanInput {
  ModelConfig model;
  int64_t nsamples = 128, seqlen = 2048;
  int64_t chunk_tokens = 4096;  // requested (whole sequences, at least one)
  int prefetch_depth = 2;       // requested (disk placement; the mirror's write-behind)
  QuantConfig quant;
  bool loaq = false;            // LoaQ targets (and residual terms on o_proj, down_proj)
  // Whether stats carry the FP flow's cross term: quant.needs_fp_flow() || loaq.
  bool fp_stats = false;
  // Flows kept at each boundary: 2 while quantize.cpp propagates the FP flow
  // whatever the method needs (as it does today), 1 once it skips it.
  int flows_stored = 2;
  Placement placement = Placement::Auto;  // --activations; Auto picks
  // A resumable job (--workdir): its memory placement is MemoryMirrored.
  bool mirror_to_workdir = false;
  int threads = 1;                        // compute threads (attention scratch, codec frames)
  // Resident before the job: binary, libraries, thread pools (peak_rss_bytes()
  // measured at the start of run_quantize).
  uint64_t baseline_bytes = 0;
  // The model's mmapped safetensors pages resident at once: the pipeline
  // drops each block's pages when the block is done (Model::release_block),
  // so the largest block's stored bytes, plus the tensors outside the blocks
  // (embeddings, lm_head, final norm), which the embedding and the checkpoint
  // assembly touch and nothing drops.
  uint64_t mapped_block_bytes = 0;
  uint64_t mapped_other_bytes = 0;
  // Linears of one sub-layer group quantized at once (--linear-concurrency):
  // 0 = as many as the largest group has (q,k,v: 3), else at most this many;
  // the plan lowers it before anything that would change the output bytes.
  int linear_concurrency = 0;
  int64_t calib_stream_tokens = 0;  // tokens of the calibration file, held as int32
  CompressedStoreOptions store;     // slab pool and frame size of the disk store
  uint64_t host_limit = kUnlimitedBytes;  // --host-mem-limit
  // On a device: the chunk passes' host slots are pinned memory
  // (src/pipeline/chunk_pass.h), named as such in the plan.
  bool pinned_staging = false;
  // --learn: the block's training phase (block_learning.h) before its stats.
  LearnConfig learn;
  // Staged statistics spilled through a store of their own
  // (src/pipeline/block_stats.h): the stats and propagate passes' slots hold
  // x and a group input; the spill store holds spilled_bytes in memory, or
  // is a compressed store of its own on disk. None: the recompute path, or
  // the inputs kept in host memory (the caller adds those bytes).
  enum class Spill { None, Memory, Disk } spill = Spill::None;
  // Spill::Memory: what the spill store holds at its peak (spilled_bytes()).
  uint64_t spilled_bytes = 0;
};

struct MemoryPlan {
  Placement placement = Placement::Memory;  // never Auto
  int64_t seqs_per_chunk = 1, chunk_tokens = 0, nchunks = 0;
  int prefetch_depth = 0;
  int linear_concurrency = 1;  // linears of a group quantized at once (never 0)
  uint64_t peak_bytes = 0;  // the estimate, an upper bound of the job's peak RSS
  std::string peak_phase;   // when it is reached, e.g. "quantize mlp.down_proj"
  std::vector<std::pair<std::string, uint64_t>> breakdown;  // sums to peak_bytes
  uint64_t host_limit = kUnlimitedBytes;
  std::string reason;  // why placement, chunk, depth or concurrency differ from what was asked
  // Several lines: the choice, then the breakdown of the peak.
  std::string describe() const;
  // Bytes held through every phase on top of the estimate (the staged group
  // inputs): added to the peak and its breakdown.
  void add_part(const std::string& what, uint64_t bytes) {
    peak_bytes += bytes;
    breakdown.emplace_back(what, bytes);
  }
};

// The estimate for one choice, worst phase (stats, quantize, propagate) of
// any block; placement must not be Auto. linear_concurrency: linears of a
// group whose working sets are live at once (clamped to the group's size).
MemoryPlan estimate_memory(const MemoryPlanInput& in, Placement placement, int64_t seqs_per_chunk, int depth,
                           int linear_concurrency = 1);

// The most linears any sub-layer group has (what full concurrency means).
int max_group_linears(const ModelConfig& model);

// The largest chunk up to the requested one (the chunk size is the only
// choice that changes the output bytes, so it shrinks last); for it, memory
// placement (MemoryMirrored with mirror_to_workdir) if every live boundary
// fits, else disk; the requested depth, else 1, else 0; for each of those the
// requested linear concurrency down to 1 first. Throws
// BudgetError ("needs at least X (parts...), --host-mem-limit is Y") when not
// even 1 sequence per chunk on disk with depth 0 fits, and InputError for a
// forced memory placement that does not fit.
MemoryPlan plan_memory(const MemoryPlanInput& in);

// The allocator policy the estimate assumes: glibc hands every freed buffer
// of this size or more back to the kernel at once (a fixed mmap threshold,
// mallopt M_MMAP_THRESHOLD) instead of using its dynamic threshold, which
// after the first large free serves buffers up to 32 MiB from heaps (one per
// thread that allocates) that keep their pages; with it one job peaked 6 MiB
// above its estimate one linear at a time and 39 MiB above with three
// (bench/RESULTS.md). Buffers this large are few (weights, chunks, n x n
// matrices), but each fresh one is faulted in page by page, so streamq's own
// (operator new, the CPU backend's pools) are large blocks
// (src/core/large_blocks.h): pages of their own as this policy makes them,
// and a freed one is kept for the next of its size only while live + kept
// stays within the stage's peak, which the estimate already counts.
// Setting it is process-wide, so the program sets it at start-up
// (tools/streamq_main.cpp), not the library.
constexpr int kPlanMmapThresholdBytes = 1 << 20;

// The plan's estimate against a measured peak (peak_rss_bytes() after the
// job): whether it bounds it and by how much.
struct PlanCheck {
  uint64_t estimate = 0, measured = 0;
  double ratio = 0;           // estimate / measured
  bool upper_bound = false;   // estimate >= measured
  bool within = false;        // upper_bound and ratio <= max_ratio
  std::string describe() const;
};
PlanCheck check_plan(const MemoryPlan& plan, uint64_t measured_peak_rss, double max_ratio = 1.5);

}  // namespace streamq
