// One sub-layer group's input statistics over all calibration chunks: the
// Hessian of the quantized flow, and (for methods that need it) the cross
// term against the FP flow and LoaQ's residual term.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "io/store/activation_store.h"
#include "src/methods/linear_stats.h"
#include "src/methods/method.h"
#include "src/model/model.h"
#include "src/pipeline/read_ahead.h"

namespace streamq {

class Backend;
class TraceRecorder;

// How the calibration sequences are cut into store chunks: seqs_per_chunk
// whole sequences each. `seq_lens` holds each sequence's token count when
// they differ (--calib-samples; each at most --seqlen, no padding); empty
// means every sequence has seqlen tokens.
struct Chunking {
  int64_t seqs_per_chunk = 1, nchunks = 0;
  std::vector<int64_t> seq_lens;
  int64_t seqs(int64_t c, int64_t total) const { return std::min(seqs_per_chunk, total - c * seqs_per_chunk); }
  // The token counts of chunk c's sequences (empty when all have seqlen).
  std::vector<int64_t> lens(int64_t c) const {
    if (seq_lens.empty()) return {};
    const auto begin = seq_lens.begin() + std::min<int64_t>(c * seqs_per_chunk, std::ssize(seq_lens));
    const auto end = seq_lens.begin() + std::min<int64_t>((c + 1) * seqs_per_chunk, std::ssize(seq_lens));
    return {begin, end};
  }
  // Tokens of chunk c, and its first token's index in the calibration ids.
  int64_t tokens(int64_t c, int64_t total, int64_t seqlen) const {
    if (seq_lens.empty()) return seqs(c, total) * seqlen;
    int64_t t = 0;
    for (const int64_t l : lens(c)) t += l;
    return t;
  }
  int64_t first_token(int64_t c, int64_t seqlen) const {
    if (seq_lens.empty()) return c * seqs_per_chunk * seqlen;
    int64_t t = 0;
    for (int64_t i = 0; i < std::min<int64_t>(c * seqs_per_chunk, std::ssize(seq_lens)); ++i) t += seq_lens[i];
    return t;
  }
};

// A block's weights as collect_stats reads them: the original on the host
// (output projections' token scales are host arithmetic), and the original
// and the partly quantized block where the device's ops read them.
struct StatsWeights {
  const BlockWeights& host;
  const BlockView& original;
  const BlockView& quantized;
};

// Runs the partly quantized block (wq) up to `group` on every chunk of the
// quantized flow at boundary `block`; with needs.fp_flow, also the original
// block (w) on the FP flow's chunk, token-aligned, for the cross term. On an
// output projection both flows' tokens are rescaled (needs.token_scales) and
// the residual-stream term is accumulated (needs.residual); both read the
// FP flow. `hint` starts reading the next chunks while this one computes.
// Forwards and the statistics' chunk products run on bk.device (chunks
// uploaded there; `rope` in its memory); the token scales on bk.host.
LinearStats collect_stats(const MethodBackends& bk, const Model& model, const StatsWeights& w,
                          const RopeTable& rope, ActivationStore& store, int64_t block, SubLayer group,
                          const Chunking& ch, int64_t nsamples, int64_t seqlen, const MethodNeeds& needs,
                          TraceRecorder* trace, const ReadAheadHint& hint = {});
// The CPU path: host weights, one host backend.
LinearStats collect_stats(Backend& be, const Model& model, const BlockWeights& w, const BlockWeights& wq,
                          const RopeTable& rope, ActivationStore& store, int64_t block, SubLayer group,
                          const Chunking& ch, int64_t nsamples, int64_t seqlen, const MethodNeeds& needs,
                          TraceRecorder* trace, const ReadAheadHint& hint = {});

// Staged statistics: every chunk of each flow is kept at the current
// group's input between groups, so a group's input is computed once, from
// the previous group's (the block runs once per flow instead of once per
// group; block_stage is block_forward cut at the group inputs, so the
// statistics and outputs are the same bytes as collect_stats + a separate
// propagation). Where the chunks are kept:
//  - no spill store: x and that input in host memory, for a
//    host-addressable backend. Memory: bytes_needed, the whole calibration
//    set at hidden + the widest group input, per flow read.
//  - a spill store (an ActivationStore of its own, lossless, in memory or
//    on disk): each group's statistics are a chunk pass (chunk_pass.h) that
//    reads the previous group's input of every chunk from it (and x from
//    the job's store at the block's boundary, or from the spill store once
//    O has changed it), runs the previous group's sub-layer on be (a device
//    too: the pass uploads and downloads), and puts the new input back; what
//    be holds is the chunks in flight (spill_slot_floats each).
class StagedFlows {
 public:
  StagedFlows(const MethodBackends& bk, const Model& model, const RopeTable& rope, const Chunking& ch,
              int64_t nsamples, int64_t seqlen, bool fp_flow, ActivationStore* spill = nullptr);
  // Group `group`'s statistics (groups in order, Qkv first: its chunks are
  // read from `store` at boundary `block`; each later group's come from the
  // previous group's sub-layer run with w.quantized, or w.original on the FP
  // flow, as it stands now, i.e. with the linears just quantized).
  LinearStats collect(const StatsWeights& w, ActivationStore& store, int64_t block, SubLayer group,
                      const MethodNeeds& needs, TraceRecorder* trace);
  // After the last group: down_proj on each kept chunk, the block's outputs
  // put into `store` at block + 1, the chunks freed.
  void propagate(const StatsWeights& w, ActivationStore& store, int64_t block, TraceRecorder* trace);
  static uint64_t bytes_needed(const ModelConfig& cfg, int64_t calib_tokens, bool fp_flow);
  // What a spill store holds at its peak: during Down's pass, gate/up's
  // input (dropped after it), down_proj's and the residual stream after O,
  // of the whole calibration set, per flow read.
  static uint64_t spilled_bytes(const ModelConfig& cfg, int64_t calib_tokens, bool fp_flow);
  // A spilled pass's slot per token and flow, in floats, for the statistics
  // of `group` (x and the wider of the group's input and the previous
  // group's) or, with group < 0, for the propagation (x and down_proj's
  // input): the memory plans count kStatsSlots / kPropagateSlots of these.
  static int64_t spill_slot_floats(const ModelConfig& cfg, int group);

 private:
  struct Chunk {
    std::vector<float> x;  // the residual stream
    Buffer<float> in;      // the next group's input
  };
  BlockSeqs seqs(int64_t c) const;
  LinearStats collect_spilled(const StatsWeights& w, ActivationStore& store, int64_t block, SubLayer group,
                              const MethodNeeds& needs, TraceRecorder* trace);
  void propagate_spilled(const StatsWeights& w, ActivationStore& store, int64_t block, TraceRecorder* trace);
  const MethodBackends& bk_;
  const Model& model_;
  const RopeTable& rope_;
  const Chunking& ch_;
  int64_t nsamples_, seqlen_;
  bool fp_flow_;
  ActivationStore* spill_;
  int next_ = 0;  // the group collect() takes next
  std::vector<Chunk> q_, fp_;
};

}  // namespace streamq
