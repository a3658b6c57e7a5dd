// How a quantization job fits a device's memory (--gpu-mem-limit): what the
// device path holds at once, phase by phase, as an upper bound of the
// device pool's high-water mark, and the largest chunk that keeps it under
// the limit. A limit too small for any chunk, or for the largest linear's
// sweep, is refused here, before anything runs, naming what does not fit
// and the smallest limit that works.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "src/model/config.h"

namespace streamq {

struct DevicePlanInput {
  ModelConfig model;
  int64_t seqlen = 2048;
  int64_t max_seqs_per_chunk = 1;  // what the host plan (or a resumed job's layout) allows
  bool fp_flow = false;            // the original block and the FP flow's chunk are on the device too
  bool output_terms = false;       // LoaQ's residual streams / token scales on o_proj and down_proj
  bool sweep_on_device = false;    // the GPTQ sweep's buffers (else the sweep runs on the host)
  bool p1 = false, p2 = false;     // GPTAQ's / CAE's n x n compensation matrices in the sweep
  int64_t group = -1;              // quantization group size (-1: per channel): scales and zeros per group
  bool factor_on_device = false;   // factor_hessian's n x n buffers (device_factor_fits decides)
  int factor_bytes_per_element = 8;  // 8: float64 factor, 4: float32
  int linear_concurrency = 1;      // sweeps of one group live at once
  bool weights_bf16 = false;       // --device-weights bf16: linears held in bf16, widened per GEMM
  bool resumed = false;            // the chunking is fixed: fit it or fail
  // Staged statistics spilled through a store (src/pipeline/block_stats.h)
  // may run: their passes' slots (x and a group input) are counted beside
  // the recompute path's, each phase the larger of the two.
  bool staged_spill = false;
  // --learn sde on the device (block_learning.cpp): each linear's SDE
  // factors, W', its fake quantization and gradient, the mini-batch's flows
  // and tapes; with cross-layer learning (learn_next_block) the next block's
  // weights, outputs and tape too.
  bool learn = false;
  int64_t learn_batch_seqs = 1;
  bool learn_next_block = false;
  uint64_t limit = UINT64_MAX;     // --gpu-mem-limit
};

struct DevicePlan {
  int64_t seqs_per_chunk = 1;
  uint64_t peak_bytes = 0;  // upper bound of the device pool's high-water mark
  std::string peak_phase;   // "statistics", "sweep self_attn.q_proj", "propagate"
  std::vector<std::pair<std::string, uint64_t>> breakdown;  // sums to peak_bytes
  uint64_t limit = UINT64_MAX;
  std::string reason;       // why seqs_per_chunk is lower than asked
  std::string describe() const;
};

// Whether factor_hessian's float64 work fits on the device beside the
// resident weights: U, and with a compensation matrix (in.p1 or in.p2) T and
// D then P, [n, n] each, for the widest group input. It does not depend on
// the chunking, so a job decides it (and records it in its identity: cuSOLVER
// and LAPACK round differently) before it plans chunks.
bool device_factor_fits(const DevicePlanInput& in);

// The estimate for seqs_per_chunk sequences of seqlen tokens per chunk.
DevicePlan estimate_device_memory(const DevicePlanInput& in, int64_t seqs_per_chunk);

// The most sequences per chunk, up to in.max_seqs_per_chunk, whose estimate
// fits in.limit. InputError (exit 2) naming --gpu-mem-limit, what does not
// fit (one sequence's statistics, or the sweep of the largest linear, named)
// and the smallest limit that works.
DevicePlan plan_device_memory(const DevicePlanInput& in);

}  // namespace streamq
