// One sub-layer group's input statistics over all calibration chunks: the
// Hessian of the quantized flow, and (for methods that need it) the cross
// term against the FP flow and LoaQ's residual term.
#pragma once

#include <algorithm>
#include <cstdint>

#include "io/store/activation_store.h"
#include "src/methods/linear_stats.h"
#include "src/methods/method.h"
#include "src/model/model.h"
#include "src/pipeline/read_ahead.h"

namespace streamq {

class Backend;
class TraceRecorder;

// How the calibration sequences are cut into store chunks.
struct Chunking {
  int64_t seqs_per_chunk = 1, nchunks = 0;
  int64_t seqs(int64_t c, int64_t total) const { return std::min(seqs_per_chunk, total - c * seqs_per_chunk); }
};

// Runs the partly quantized block (wq) up to `group` on every chunk of the
// quantized flow at boundary `block`; with needs.fp_flow, also the original
// block (w) on the FP flow's chunk, token-aligned, for the cross term. On an
// output projection both flows' tokens are rescaled (needs.token_scales) and
// the residual-stream term is accumulated (needs.residual); both read the
// FP flow. `hint` starts reading the next chunks while this one computes.
LinearStats collect_stats(Backend& be, const Model& model, const BlockWeights& w, const BlockWeights& wq,
                          const RopeTable& rope, ActivationStore& store, int64_t block, SubLayer group,
                          const Chunking& ch, int64_t nsamples, int64_t seqlen, const MethodNeeds& needs,
                          TraceRecorder* trace, const ReadAheadHint& hint = {});

}  // namespace streamq
