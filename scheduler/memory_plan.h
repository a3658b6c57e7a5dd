// How a quantization job fits a host memory limit: where the block-boundary
// activations live, how many sequences go in a chunk, how deep the I/O
// read-ahead/write-behind may go, and the peak resident memory that choice
// is expected to reach, part by part.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/activation_store.h"
#include "methods/quant_config.h"
#include "model/config.h"
#include "scheduler/memory_budget.h"

namespace streamq {

enum class Placement { Auto, Memory, Disk };
const char* to_string(Placement p);

struct MemoryPlanInput {
  ModelConfig model;
  int64_t nsamples = 128, seqlen = 2048;
  int64_t chunk_tokens = 4096;  // requested (whole sequences, at least one)
  int prefetch_depth = 2;       // requested (disk placement only)
  QuantConfig quant;
  bool loaq = false;            // LoaQ targets (and residual terms on o_proj, down_proj)
  // Whether stats carry the FP flow's cross term: quant.needs_fp_flow() || loaq.
  bool fp_stats = false;
  // Flows kept at each boundary: 2 while quantize.cpp propagates the FP flow
  // whatever the method needs (as it does today), 1 once it skips it.
  int flows_stored = 2;
  Placement placement = Placement::Auto;  // --activations; Auto picks
  int threads = 1;                        // compute threads (attention scratch, codec frames)
  // Resident before the job: binary, libraries, thread pools (peak_rss_bytes()
  // measured at the start of run_quantize).
  uint64_t baseline_bytes = 0;
  // The model's mmapped safetensors pages, which stay resident once read (no
  // madvise today): the model file bytes. Once the loader drops a block's
  // pages after loading it, the largest block's bytes.
  uint64_t mapped_model_bytes = 0;
  int64_t calib_stream_tokens = 0;  // tokens of the calibration file, held as int32
  CompressedStoreOptions store;     // slab pool and frame size of the disk store
  uint64_t host_limit = kUnlimitedBytes;  // --host-mem-limit
};

struct MemoryPlan {
  Placement placement = Placement::Memory;  // never Auto
  int64_t seqs_per_chunk = 1, chunk_tokens = 0, nchunks = 0;
  int prefetch_depth = 0;
  uint64_t peak_bytes = 0;  // the estimate, an upper bound of the job's peak RSS
  std::string peak_phase;   // when it is reached, e.g. "quantize mlp.down_proj"
  std::vector<std::pair<std::string, uint64_t>> breakdown;  // sums to peak_bytes
  uint64_t host_limit = kUnlimitedBytes;
  std::string reason;  // why placement, chunk or depth differ from what was asked
  // Several lines: the choice, then the breakdown of the peak.
  std::string describe() const;
};

// The estimate for one choice, worst phase (stats, quantize, propagate) of
// any block; placement must not be Auto.
MemoryPlan estimate_memory(const MemoryPlanInput& in, Placement placement, int64_t seqs_per_chunk, int depth);

// Memory placement if every live boundary fits, else disk; the largest chunk
// up to the requested one; the requested depth, else 1, else 0. Throws
// BudgetError ("needs at least X (parts...), --host-mem-limit is Y") when not
// even 1 sequence per chunk on disk with depth 0 fits, and InputError for a
// forced memory placement that does not fit.
MemoryPlan plan_memory(const MemoryPlanInput& in);

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
