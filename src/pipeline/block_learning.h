// CQE+'s learned weight adjustment (issue 18; ../shared/papers/
// cqe-plus-sde-crosslayer.txt): before a block is quantized, each linear is
// re-parameterized through its SVD with a learnable band of the singular-
// value matrix (SDE, src/methods/sde.h) and trained with Adam so that the
// block, its weights fake-quantized on the job's grid (straight-through),
// reproduces the FP block's outputs from the quantized flow's inputs; with
// cross-layer learning (CL) the frozen FP next block's outputs too. The
// trained weights then replace the block's FP weights as what the job's
// method quantizes; the FP flow keeps the original block.
//
// A block's training is the unit of durability: it reads only the block's
// input boundary (both flows) and is deterministic for a seed, so a job
// killed mid-training redoes the block from its start to the same bytes.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "io/store/activation_store.h"
#include "kernels/backend.h"
#include "src/methods/quant_config.h"
#include "src/model/model.h"
#include "src/pipeline/block_stats.h"
#include "src/pipeline/read_ahead.h"

namespace streamq {

class TraceRecorder;

enum class LearnKind { None, Sde };
const char* to_string(LearnKind k);  // "none", "sde"

struct LearnConfig {
  LearnKind kind = LearnKind::None;
  // Diagonals each side of the main one that are learnable (0: LSI's
  // diagonal only). The paper's ablation settles on 100 for 4096-wide
  // models (its Table VII: 50/100/200 within noise of each other).
  int band = 100;
  // Weight of the next block's output term (CL); 0: the block's own output only.
  double cl_lambda = 0.05;
  int epochs = 2;
  double lr = 2.5e-4;     // Adam, as the paper (and LSI)
  int64_t batch_seqs = 1; // calibration sequences per step
  bool enabled() const { return kind != LearnKind::None; }
  // InputError naming the flag when a value is out of range.
  void validate() const;
  std::string describe() const;  // e.g. "sde band 100 cl 0.05 epochs 2 lr 0.00025 batch 1"
  nlohmann::json to_json() const;
};

// What one block's training did, for its report.
struct LearnReport {
  double seconds = 0, seconds_svd = 0;
  // The epochs' grid fits (W' formed, the MSE or min/max grid fit on it,
  // uploaded): once per epoch, not per step, so a cost model keeps them apart.
  double seconds_grid = 0;
  int64_t steps = 0;
  double loss_first = 0;  // the first step's loss (the RTN-fake-quantized block, before any update)
  double loss_last_epoch = 0;  // the mean loss over the last epoch's steps
  int64_t params = 0;     // learnable parameters of the block
  uint64_t working_bytes = 0;  // the training's own arrays (SVD factors, band, Adam state, tapes)
  nlohmann::json to_json() const;
  static LearnReport from_json(const nlohmann::json& j);
};

struct LearnInputs {
  Backend& be;    // the forwards, backwards and SDE products (the job's device, or the CPU)
  Backend& host;  // the SVD (float64 LAPACK); the same backend on the CPU
  const ModelConfig& cfg;
  const RopeTable& rope;
  ActivationStore& store;  // block `block`'s input boundary, both flows
  const Chunking& ch;
  int64_t nsamples = 0, seqlen = 0;
  int64_t block = 0;
  uint64_t seed = 0;
  const QuantConfig& quant;  // the grid the training fake-quantizes on
  // The quantized flow's view of the block (act/kv quantization, online
  // Hadamard as the job runs it); its linears' weights are replaced.
  const BlockView& quant_view;
  const BlockView& fp_view;         // the original block, as the FP flow runs it
  const BlockView* next_fp_view;    // the next block (FP), null for the last block or without CL
  TraceRecorder* trace = nullptr;
  ReadAheadHint hint;  // the store's read-ahead: each epoch's chunks are hinted in the order it reads them
};

// The block's weights with every linear replaced by its trained W' (biases,
// norms unchanged): what the method then quantizes.
BlockWeights learn_block(const LearnInputs& in, const LearnConfig& cfg, const BlockWeights& w, LearnReport* report);

}  // namespace streamq
