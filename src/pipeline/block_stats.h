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

}  // namespace streamq
