// Statistics of one sub-layer group over the calibration chunks.
#include "src/pipeline/block_stats.h"

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "src/core/error.h"
#include "src/methods/loaq.h"
#include "src/model/resident_block.h"
#include "src/pipeline/chunk_pass.h"
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

// One chunk's contribution to the group's statistics from what its capture
// saw, on bk.device: the group's input in each flow (in_fp null without the
// FP flow) and, for an output projection with residual terms or token
// scales, the residual streams res_q/res_fp [tokens, hidden].
void accumulate_chunk(const MethodBackends& bk, const ModelConfig& cfg, const BlockWeights& host_w, SubLayer group,
                      const MethodNeeds& needs, int64_t tokens, int64_t nseq, const float* in_q, const float* res_q,
                      const float* in_fp, const float* res_fp, LinearStats* stats_out) {
  Backend& be = bk.device;
  LinearStats& stats = *stats_out;
  const int64_t in = sublayer_in_features(cfg, group), hidden = cfg.hidden;
  const bool out_proj =
      (needs.residual || needs.token_scales) && (group == SubLayer::O || group == SubLayer::Down);
  if (!out_proj) {
    if (in_fp) stats.accumulate(be, in_q, in_fp, tokens, nseq);
    else stats.accumulate(be, in_q, tokens, nseq);
    return;
  }
  const Linear* w_out = &host_w.linears.at(group == SubLayer::O ? "self_attn.o_proj" : "mlp.down_proj");
  // Per-token scales of the sub-layer outputs h + W x (original W), or 1:
  // host arithmetic on host copies (a device downloads them).
  auto to_host = [&](const float* p, int64_t count) {
    std::vector<float> h(static_cast<size_t>(count));
    be.copy_to_host(h.data(), p, static_cast<uint64_t>(count) * sizeof(float));
    return h;
  };
  std::vector<float> hin_fp = to_host(in_fp, tokens * in), hres_fp = to_host(res_fp, tokens * hidden),
                     hin_q = to_host(in_q, tokens * in), hres_q = to_host(res_q, tokens * hidden);
  be.synchronize();  // the downloads are asynchronous on a device
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
  LinearStats stats(in);
  Buffer<float> in_fp, res_fp, in_q, res_q;  // what the captures saw, on the backend
  auto grab = [&](Buffer<float>* dst_in, Buffer<float>* dst_res) {
    return [&, dst_in, dst_res](SubLayer s, const float* input, const float* residual, int64_t tokens,
                                int64_t width) {
      if (s != group) return;
      keep(be, dst_in, input, tokens * width, "stats: sub-layer group input");
      if (out_proj) keep(be, dst_res, residual, tokens * hidden, "stats: residual stream");
    };
  };
  // A chunk pass (chunk_pass.h) whose item is one chunk of both flows, the
  // FP flow's first: the next chunk's read and upload overlap this one's
  // forwards and statistics, which run in chunk order on the compute stream.
  auto ahead = std::make_shared<ReadAhead>(hint, block, ReadAhead::stats_order(ch.nchunks, fp_flow));
  ahead->consumed(-1);
  const int64_t per_chunk = fp_flow ? 2 : 1;
  std::vector<ChunkPassItem> items;
  for (int64_t c = 0; c < ch.nchunks; ++c) {
    const int64_t nseq = ch.seqs(c, nsamples), tokens = ch.tokens(c, nsamples, seqlen);
    const std::vector<int64_t> lens = ch.lens(c);  // empty: nseq x seqlen
    const int64_t flow_floats = tokens * hidden;
    ChunkPassItem item;
    item.floats = per_chunk * flow_floats;
    // The store reads straight into the slot (the FP flow's chunk first,
    // then the quantized one's); a chunk of another size is get_into's error.
    item.read = [&store, ahead, block, c, fp_flow, per_chunk, flow_floats](std::span<float> x) {
      if (fp_flow) {
        store.get_into(block, Flow::Fp, c, x.first(static_cast<size_t>(flow_floats)));
        ahead->consumed(c * per_chunk);
      }
      store.get_into(block, Flow::Quant, c, x.last(static_cast<size_t>(flow_floats)));
      ahead->consumed(c * per_chunk + per_chunk - 1);
    };
    item.compute = [&, c, nseq, tokens, lens, flow_floats](float* x) {
      TraceSpan span(trace, std::string("stats ") + to_string(group), trace_cat::kStats);
      span.arg("block", block).arg("chunk", c).arg("tokens", tokens);
      auto forward = [&](const BlockView& weights, float* xs, const CaptureFn& capture) {
        if (lens.empty()) block_forward(be, cfg, weights, rope, xs, nseq, seqlen, capture, static_cast<int>(group));
        else block_forward(be, cfg, weights, rope, xs, lens, capture, static_cast<int>(group));
      };
      if (fp_flow) forward(w.original, x, grab(&in_fp, &res_fp));
      forward(w.quantized, x + (fp_flow ? flow_floats : 0), grab(&in_q, &res_q));
      accumulate_chunk(bk, cfg, w.host, group, needs, tokens, nseq, in_q.data(), res_q.data(),
                       fp_flow ? in_fp.data() : nullptr, fp_flow ? res_fp.data() : nullptr, &stats);
    };
    items.push_back(std::move(item));
  }
  run_chunk_pass(be, std::move(items), {.slots = kStatsSlots, .what = "stats: activation chunks"});
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

StagedFlows::StagedFlows(const MethodBackends& bk, const Model& model, const RopeTable& rope, const Chunking& ch,
                         int64_t nsamples, int64_t seqlen, bool fp_flow)
    : bk_(bk), model_(model), rope_(rope), ch_(ch), nsamples_(nsamples), seqlen_(seqlen), fp_flow_(fp_flow) {
  if (!bk.device.host_addressable())
    throw InternalError("staged statistics keep chunks in host memory: a host-addressable backend only");
}

BlockSeqs StagedFlows::seqs(int64_t c) const {
  BlockSeqs s;
  s.lens = ch_.lens(c);
  s.nseq = ch_.seqs(c, nsamples_);
  s.seqlen = seqlen_;
  return s;
}

LinearStats StagedFlows::collect(const StatsWeights& w, ActivationStore& store, int64_t block, SubLayer group,
                                 const MethodNeeds& needs, TraceRecorder* trace) {
  Backend& be = bk_.device;
  const ModelConfig& cfg = model_.config();
  const bool fp = fp_flow_ && needs.fp_flow;
  if ((needs.residual || needs.token_scales) && !fp)
    throw InternalError("staged stats: residual terms and token scales compare the FP flow, which is not collected");
  const int g = static_cast<int>(group);
  if (g != next_) throw InternalError("staged stats: groups must come in order");
  ++next_;
  if (group == SubLayer::Qkv) {
    q_.clear();
    fp_.clear();
    q_.resize(static_cast<size_t>(ch_.nchunks));
    fp_.resize(fp ? static_cast<size_t>(ch_.nchunks) : 0);
  }
  LinearStats stats(sublayer_in_features(cfg, group));
  for (int64_t c = 0; c < ch_.nchunks; ++c) {
    const int64_t tokens = ch_.tokens(c, nsamples_, seqlen_), nseq = ch_.seqs(c, nsamples_);
    TraceSpan span(trace, std::string("stats ") + to_string(group), trace_cat::kStats);
    span.arg("block", block).arg("chunk", c).arg("tokens", tokens).arg("staged", 1);
    // The group's input of each flow: read and normed (q/k/v), or the
    // previous group's sub-layer run on its kept input, once.
    auto advance = [&](Chunk& k, Flow flow, const BlockView& weights) {
      if (group == SubLayer::Qkv) {
        store.get(block, flow, c, &k.x);
        k.in = block_stage_begin(be, cfg, weights, k.x.data(), tokens);
      } else {
        k.in = block_stage(be, cfg, weights, rope_, seqs(c), static_cast<SubLayer>(g - 1), k.x.data(),
                           std::move(k.in));
      }
    };
    if (fp) advance(fp_[static_cast<size_t>(c)], Flow::Fp, w.original);
    advance(q_[static_cast<size_t>(c)], Flow::Quant, w.quantized);
    const Chunk& kq = q_[static_cast<size_t>(c)];
    const Chunk* kf = fp ? &fp_[static_cast<size_t>(c)] : nullptr;
    accumulate_chunk(bk_, cfg, w.host, group, needs, tokens, nseq, kq.in.data(), kq.x.data(),
                     kf ? kf->in.data() : nullptr, kf ? kf->x.data() : nullptr, &stats);
  }
  return stats;
}

void StagedFlows::propagate(const StatsWeights& w, ActivationStore& store, int64_t block, TraceRecorder* trace) {
  if (next_ != kNumSubLayers) throw InternalError("staged propagate: every group's statistics first");
  Backend& be = bk_.device;
  const ModelConfig& cfg = model_.config();
  for (int64_t c = 0; c < ch_.nchunks; ++c) {
    auto finish = [&](Chunk& k, Flow flow, const BlockView& weights, const char* name) {
      TraceSpan span(trace, name, trace_cat::kForward);
      span.arg("block", block).arg("chunk", c).arg("staged", 1);
      block_stage(be, cfg, weights, rope_, seqs(c), SubLayer::Down, k.x.data(), std::move(k.in));
      store.put(block + 1, flow, c, k.x.data(), static_cast<int64_t>(k.x.size()));
      k = Chunk{};
    };
    finish(q_[static_cast<size_t>(c)], Flow::Quant, w.quantized, "forward quant");
    if (!fp_.empty()) finish(fp_[static_cast<size_t>(c)], Flow::Fp, w.original, "forward fp");
  }
  next_ = 0;
}

uint64_t StagedFlows::bytes_needed(const ModelConfig& cfg, int64_t calib_tokens, bool fp_flow) {
  const int64_t widest = std::max({cfg.hidden, cfg.heads * cfg.head_dim, cfg.intermediate});
  return static_cast<uint64_t>(calib_tokens) * static_cast<uint64_t>(cfg.hidden + widest) * sizeof(float) *
         (fp_flow ? 2u : 1u);
}

}  // namespace streamq
