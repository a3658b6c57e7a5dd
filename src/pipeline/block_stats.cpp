// Statistics of one sub-layer group over the calibration chunks.
#include "src/pipeline/block_stats.h"

#include <string>
#include <vector>

#include "kernels/backend.h"
#include "src/core/error.h"
#include "src/methods/loaq.h"
#include "scheduler/trace.h"

namespace streamq {

LinearStats collect_stats(Backend& be, const Model& model, const BlockWeights& w, const BlockWeights& wq,
                          const RopeTable& rope, ActivationStore& store, int64_t block, SubLayer group,
                          const Chunking& ch, int64_t nsamples, int64_t seqlen, const MethodNeeds& needs,
                          TraceRecorder* trace, const ReadAheadHint& hint) {
  const ModelConfig& cfg = model.config();
  const int64_t in = sublayer_in_features(cfg, group), hidden = cfg.hidden;
  const bool fp_flow = needs.fp_flow;
  if ((needs.residual || needs.token_scales) && !fp_flow)
    throw InternalError("collect_stats: residual terms and token scales compare the FP flow, which is not collected");
  // The output projections' terms: residual streams grabbed, tokens rescaled.
  const bool out_proj =
      (needs.residual || needs.token_scales) && (group == SubLayer::O || group == SubLayer::Down);
  const Linear* w_out = nullptr;
  if (out_proj) w_out = &w.linears.at(group == SubLayer::O ? "self_attn.o_proj" : "mlp.down_proj");
  LinearStats stats(in);
  std::vector<float> x, x_fp, in_fp, res_fp, in_q, res_q;
  auto grab = [&](std::vector<float>* dst_in, std::vector<float>* dst_res) {
    return [&, dst_in, dst_res](SubLayer s, const float* input, const float* residual, int64_t tokens,
                                int64_t width) {
      if (s != group) return;
      dst_in->assign(input, input + tokens * width);
      if (out_proj) dst_res->assign(residual, residual + tokens * hidden);
    };
  };
  ReadAhead ahead(hint, block, ReadAhead::stats_order(ch.nchunks, fp_flow));
  ahead.consumed(-1);
  const int64_t per_chunk = fp_flow ? 2 : 1;
  for (int64_t c = 0; c < ch.nchunks; ++c) {
    const int64_t nseq = ch.seqs(c, nsamples), tokens = ch.tokens(c, nsamples, seqlen);
    const std::vector<int64_t> lens = ch.lens(c);  // empty: nseq x seqlen
    if (fp_flow) {
      store.get(block, Flow::Fp, c, &x_fp);
      ahead.consumed(c * per_chunk);
    }
    store.get(block, Flow::Quant, c, &x);
    ahead.consumed(c * per_chunk + per_chunk - 1);
    TraceSpan span(trace, std::string("stats ") + to_string(group), trace_cat::kStats);
    span.arg("block", block).arg("chunk", c).arg("tokens", tokens);
    auto forward = [&](const BlockWeights& weights, float* xs, const CaptureFn& capture) {
      if (lens.empty()) block_forward(be, cfg, weights, rope, xs, nseq, seqlen, capture, static_cast<int>(group));
      else block_forward(be, cfg, weights, rope, xs, lens, capture, static_cast<int>(group));
    };
    if (fp_flow) forward(w, x_fp.data(), grab(&in_fp, &res_fp));
    forward(wq, x.data(), grab(&in_q, &res_q));
    if (!out_proj) {
      if (fp_flow) stats.accumulate(be, in_q.data(), in_fp.data(), tokens, nseq);
      else stats.accumulate(be, in_q.data(), tokens, nseq);
      continue;
    }
    // Per-token scales of the sub-layer outputs h + W x (original W), or 1.
    std::vector<float> s_fp(tokens, 1.0f), s_q(tokens, 1.0f);
    if (needs.token_scales) {
      std::vector<float> y(static_cast<size_t>(tokens * hidden));
      be.gemm(Trans::N, Trans::T, tokens, hidden, in, 1.0f, in_fp.data(), in, w_out->w.data(), in, 0.0f, y.data(),
              hidden);
      if (!w_out->b.empty()) be.add_bias(y.data(), w_out->b.data(), tokens, hidden);
      loaq_token_scales(res_fp.data(), y.data(), tokens, hidden, cfg.rms_eps, s_fp.data());
      be.gemm(Trans::N, Trans::T, tokens, hidden, in, 1.0f, in_q.data(), in, w_out->w.data(), in, 0.0f, y.data(),
              hidden);
      if (!w_out->b.empty()) be.add_bias(y.data(), w_out->b.data(), tokens, hidden);
      loaq_token_scales(res_q.data(), y.data(), tokens, hidden, cfg.rms_eps, s_q.data());
    }
    std::vector<float> r(static_cast<size_t>(tokens * hidden));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < in; ++i) {
        in_fp[t * in + i] *= s_fp[t];
        in_q[t * in + i] *= s_q[t];
      }
      for (int64_t o = 0; o < hidden; ++o) r[t * hidden + o] = s_fp[t] * res_fp[t * hidden + o] - s_q[t] * res_q[t * hidden + o];
    }
    stats.accumulate(be, in_q.data(), in_fp.data(), tokens, nseq);
    if (needs.residual) stats.accumulate_residual(be, r.data(), in_q.data(), tokens, hidden);
  }
  return stats;
}

}  // namespace streamq
