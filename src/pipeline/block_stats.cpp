// Statistics of one sub-layer group over the calibration chunks.
#include "src/pipeline/block_stats.h"

#include <string>
#include <vector>

#include "kernels/backend.h"
#include "src/core/error.h"
#include "src/methods/loaq.h"
#include "src/model/resident_block.h"
#include "scheduler/trace.h"

namespace streamq {

namespace {

// A copy, in the backend's memory, of what a capture hook saw (the hook's
// pointers die with the forward pass that made them).
void keep(Backend& be, Buffer<float>* dst, const float* src, int64_t count, const char* what) {
  dst->reset();  // the previous chunk's, returned before the next is drawn (the device plan counts one)
  *dst = be.alloc<float>(static_cast<size_t>(count), what);
  be.copy_within(dst->data(), src, static_cast<uint64_t>(count) * sizeof(float));
}

std::vector<float> to_host(Backend& be, const Buffer<float>& b) { return be.download_all(b); }

}  // namespace

LinearStats collect_stats(const MethodBackends& bk, const Model& model, const StatsWeights& w,
                          const RopeTable& rope, ActivationStore& store, int64_t block, SubLayer group,
                          const Chunking& ch, int64_t nsamples, int64_t seqlen, const MethodNeeds& needs,
                          TraceRecorder* trace, const ReadAheadHint& hint) {
  Backend& be = bk.device;
  const ModelConfig& cfg = model.config();
  const int64_t in = sublayer_in_features(cfg, group), hidden = cfg.hidden;
  const bool fp_flow = needs.fp_flow;
  if ((needs.residual || needs.token_scales) && !fp_flow)
    throw InternalError("collect_stats: residual terms and token scales compare the FP flow, which is not collected");
  // The output projections' terms: residual streams grabbed, tokens rescaled.
  const bool out_proj =
      (needs.residual || needs.token_scales) && (group == SubLayer::O || group == SubLayer::Down);
  const Linear* w_out = nullptr;
  if (out_proj) w_out = &w.host.linears.at(group == SubLayer::O ? "self_attn.o_proj" : "mlp.down_proj");
  LinearStats stats(in);
  std::vector<float> x, x_fp;
  ResidentChunk chunk_q(be, "stats: quantized-flow chunk"), chunk_fp(be, "stats: FP-flow chunk");
  Buffer<float> in_fp, res_fp, in_q, res_q;  // what the captures saw, on the backend
  auto grab = [&](Buffer<float>* dst_in, Buffer<float>* dst_res) {
    return [&, dst_in, dst_res](SubLayer s, const float* input, const float* residual, int64_t tokens,
                                int64_t width) {
      if (s != group) return;
      keep(be, dst_in, input, tokens * width, "stats: sub-layer group input");
      if (out_proj) keep(be, dst_res, residual, tokens * hidden, "stats: residual stream");
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
    auto forward = [&](const BlockView& weights, float* xs, const CaptureFn& capture) {
      if (lens.empty()) block_forward(be, cfg, weights, rope, xs, nseq, seqlen, capture, static_cast<int>(group));
      else block_forward(be, cfg, weights, rope, xs, lens, capture, static_cast<int>(group));
    };
    if (fp_flow) forward(w.original, chunk_fp.place(x_fp), grab(&in_fp, &res_fp));
    forward(w.quantized, chunk_q.place(x), grab(&in_q, &res_q));
    if (!out_proj) {
      if (fp_flow) stats.accumulate(be, in_q.data(), in_fp.data(), tokens, nseq);
      else stats.accumulate(be, in_q.data(), tokens, nseq);
      continue;
    }
    // Per-token scales of the sub-layer outputs h + W x (original W), or 1:
    // host arithmetic on host copies (a device downloads them).
    std::vector<float> hin_fp = to_host(be, in_fp), hres_fp = to_host(be, res_fp), hin_q = to_host(be, in_q),
                       hres_q = to_host(be, res_q);
    std::vector<float> s_fp(tokens, 1.0f), s_q(tokens, 1.0f);
    if (needs.token_scales) {
      Backend& host = bk.host;
      std::vector<float> y(static_cast<size_t>(tokens * hidden));
      host.gemm(Trans::N, Trans::T, tokens, hidden, in, 1.0f, hin_fp.data(), in, w_out->w.data(), in, 0.0f, y.data(),
                hidden);
      if (!w_out->b.empty()) host.add_bias(y.data(), w_out->b.data(), tokens, hidden);
      loaq_token_scales(hres_fp.data(), y.data(), tokens, hidden, cfg.rms_eps, s_fp.data());
      host.gemm(Trans::N, Trans::T, tokens, hidden, in, 1.0f, hin_q.data(), in, w_out->w.data(), in, 0.0f, y.data(),
                hidden);
      if (!w_out->b.empty()) host.add_bias(y.data(), w_out->b.data(), tokens, hidden);
      loaq_token_scales(hres_q.data(), y.data(), tokens, hidden, cfg.rms_eps, s_q.data());
    }
    std::vector<float> r(static_cast<size_t>(tokens * hidden));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < in; ++i) {
        hin_fp[t * in + i] *= s_fp[t];
        hin_q[t * in + i] *= s_q[t];
      }
      for (int64_t o = 0; o < hidden; ++o) r[t * hidden + o] = s_fp[t] * hres_fp[t * hidden + o] - s_q[t] * hres_q[t * hidden + o];
    }
    ResidentChunk scaled_q(be, "stats: rescaled quantized input"), scaled_fp(be, "stats: rescaled FP input"),
        diff(be, "stats: residual difference");
    const float* dq = scaled_q.place(hin_q);
    stats.accumulate(be, dq, scaled_fp.place(hin_fp), tokens, nseq);
    if (needs.residual) stats.accumulate_residual(be, diff.place(r), dq, tokens, hidden);
    be.synchronize();  // the host copies above are uploads' sources until here
  }
  return stats;
}

LinearStats collect_stats(Backend& be, const Model& model, const BlockWeights& w, const BlockWeights& wq,
                          const RopeTable& rope, ActivationStore& store, int64_t block, SubLayer group,
                          const Chunking& ch, int64_t nsamples, int64_t seqlen, const MethodNeeds& needs,
                          TraceRecorder* trace, const ReadAheadHint& hint) {
  const BlockView original = host_view(w), quantized = host_view(wq);
  return collect_stats(MethodBackends{be, be}, model, StatsWeights{w, original, quantized}, rope, store, block,
                       group, ch, nsamples, seqlen, needs, trace, hint);
}

}  // namespace streamq
