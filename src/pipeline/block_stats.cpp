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
                         int64_t nsamples, int64_t seqlen, bool fp_flow, ActivationStore* spill)
    : bk_(bk), model_(model), rope_(rope), ch_(ch), nsamples_(nsamples), seqlen_(seqlen), fp_flow_(fp_flow),
      spill_(spill) {
  if (!spill && !bk.device.host_addressable())
    throw InternalError("staged statistics keep chunks in host memory: a host-addressable backend, or a spill store");
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
  if (spill_) return collect_spilled(w, store, block, group, needs, trace);
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
  if (spill_) {
    propagate_spilled(w, store, block, trace);
    next_ = 0;
    return;
  }
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

// The spill store's keys: group g's input of a chunk is "boundary" g, the
// residual stream after O is kSpilledX (the stages before O read x from the
// job's store at the block's boundary; Down and the propagation read it here).
namespace {
constexpr int64_t kSpilledX = kNumSubLayers;
}  // namespace

int64_t StagedFlows::spill_slot_floats(const ModelConfig& cfg, int group) {
  if (group < 0) return cfg.hidden + sublayer_in_features(cfg, SubLayer::Down);
  const int64_t n = sublayer_in_features(cfg, static_cast<SubLayer>(group));
  const int64_t prev = group > 0 ? sublayer_in_features(cfg, static_cast<SubLayer>(group - 1)) : 0;
  return cfg.hidden + std::max(n, prev);
}

LinearStats StagedFlows::collect_spilled(const StatsWeights& w, ActivationStore& store, int64_t block,
                                         SubLayer group, const MethodNeeds& needs, TraceRecorder* trace) {
  Backend& be = bk_.device;
  const ModelConfig& cfg = model_.config();
  const int g = static_cast<int>(group);
  const int64_t d = cfg.hidden, n = sublayer_in_features(cfg, group);
  const int64_t n_prev = g > 0 ? sublayer_in_features(cfg, static_cast<SubLayer>(g - 1)) : 0;
  const bool out_proj = (needs.residual || needs.token_scales) && (group == SubLayer::O || group == SubLayer::Down);
  // x is read where the stage runs on it (q/k/v's norm; O adds to it, so
  // GateUp's pass puts the result into the spill store) or where the
  // statistics read it (an output projection's residual terms); GPTQ's O
  // and Down passes never touch it.
  const bool x_read = group == SubLayer::Qkv || group == SubLayer::GateUp || out_proj;
  const bool x_spilled = group == SubLayer::Down;
  const bool x_written = group == SubLayer::GateUp;
  std::vector<Flow> flows = {Flow::Quant};
  if (fp_flow_ && needs.fp_flow) flows.insert(flows.begin(), Flow::Fp);
  const int64_t per_token = spill_slot_floats(cfg, g);
  LinearStats stats(n);
  std::vector<ChunkPassItem> items;
  for (int64_t c = 0; c < ch_.nchunks; ++c) {
    const int64_t tokens = ch_.tokens(c, nsamples_, seqlen_), nseq = ch_.seqs(c, nsamples_);
    const int64_t flow_floats = tokens * per_token;
    ChunkPassItem item;
    item.floats = std::ssize(flows) * flow_floats;
    item.read = [&, c, tokens, flow_floats](std::span<float> slot) {
      for (size_t f = 0; f < flows.size(); ++f) {
        const std::span<float> part = slot.subspan(f * static_cast<size_t>(flow_floats));
        if (x_read) {
          if (x_spilled) spill_->get_into(kSpilledX, flows[f], c, part.first(static_cast<size_t>(tokens * d)));
          else store.get_into(block, flows[f], c, part.first(static_cast<size_t>(tokens * d)));
        }
        if (g > 0)
          spill_->get_into(g - 1, flows[f], c,
                           part.subspan(static_cast<size_t>(tokens * d), static_cast<size_t>(tokens * n_prev)));
      }
    };
    item.compute = [&, c, tokens, nseq, flow_floats](float* slot) {
      TraceSpan span(trace, std::string("stats ") + to_string(group), trace_cat::kStats);
      span.arg("block", block).arg("chunk", c).arg("tokens", tokens).arg("staged", 1).arg("spilled", 1);
      const float* x_of[2] = {nullptr, nullptr};  // per flow: x, then the group's input
      const float* in_of[2] = {nullptr, nullptr};
      for (size_t f = 0; f < flows.size(); ++f) {
        float* x = slot + f * static_cast<size_t>(flow_floats);
        float* io = x + tokens * d;
        const BlockView& weights = flows[f] == Flow::Fp ? w.original : w.quantized;
        Buffer<float> in;
        if (group == SubLayer::Qkv) {
          in = block_stage_begin(be, cfg, weights, x, tokens);
        } else {
          Buffer<float> prev = be.alloc<float>(static_cast<size_t>(tokens * n_prev), "staged stats: previous group's input");
          be.copy_within(prev.data(), io, static_cast<uint64_t>(tokens * n_prev) * sizeof(float));
          in = block_stage(be, cfg, weights, rope_, seqs(c), static_cast<SubLayer>(g - 1), x, std::move(prev));
        }
        be.copy_within(io, in.data(), static_cast<uint64_t>(tokens * n) * sizeof(float));
        const size_t k = flows[f] == Flow::Fp ? 1 : 0;
        x_of[k] = x;
        in_of[k] = io;
      }
      accumulate_chunk(bk_, cfg, w.host, group, needs, tokens, nseq, in_of[0], x_of[0], in_of[1], x_of[1], &stats);
    };
    item.write = [&, c, tokens, flow_floats](std::span<const float> slot) {
      for (size_t f = 0; f < flows.size(); ++f) {
        const float* x = slot.data() + f * static_cast<size_t>(flow_floats);
        spill_->put(g, flows[f], c, x + tokens * d, tokens * n);
        if (x_written) spill_->put(kSpilledX, flows[f], c, x, tokens * d);
      }
    };
    items.push_back(std::move(item));
  }
  run_chunk_pass(be, std::move(items), {.slots = kStatsSlots, .what = "staged stats: spilled group inputs"});
  if (g > 0) spill_->drop(g - 1);
  return stats;
}

void StagedFlows::propagate_spilled(const StatsWeights& w, ActivationStore& store, int64_t block,
                                    TraceRecorder* trace) {
  Backend& be = bk_.device;
  const ModelConfig& cfg = model_.config();
  const int64_t d = cfg.hidden, n = sublayer_in_features(cfg, SubLayer::Down);
  const int down = static_cast<int>(SubLayer::Down);
  std::vector<Flow> flows = {Flow::Quant};
  if (fp_flow_) flows.push_back(Flow::Fp);
  // Every flow the statistics kept: an FP flow the method did not read was
  // never staged, and collect() saw the needs.
  std::vector<ChunkPassItem> items;
  for (int64_t c = 0; c < ch_.nchunks; ++c) {
    const int64_t tokens = ch_.tokens(c, nsamples_, seqlen_);
    for (const Flow flow : flows) {
      ChunkPassItem item;
      item.floats = tokens * (d + n);
      item.read = [&, c, tokens, flow](std::span<float> slot) {
        spill_->get_into(kSpilledX, flow, c, slot.first(static_cast<size_t>(tokens * d)));
        spill_->get_into(down, flow, c, slot.subspan(static_cast<size_t>(tokens * d)));
      };
      item.compute = [&, c, tokens, flow](float* x) {
        TraceSpan span(trace, flow == Flow::Fp ? "forward fp" : "forward quant", trace_cat::kForward);
        span.arg("block", block).arg("chunk", c).arg("staged", 1).arg("spilled", 1);
        Buffer<float> in = be.alloc<float>(static_cast<size_t>(tokens * n), "staged propagate: down_proj's input");
        be.copy_within(in.data(), x + tokens * d, static_cast<uint64_t>(tokens * n) * sizeof(float));
        block_stage(be, cfg, flow == Flow::Fp ? w.original : w.quantized, rope_, seqs(c), SubLayer::Down, x,
                    std::move(in));
      };
      item.write = [&, c, tokens, flow](std::span<const float> slot) {
        store.put(block + 1, flow, c, slot.data(), tokens * d);
      };
      items.push_back(std::move(item));
    }
  }
  run_chunk_pass(be, std::move(items), {.slots = kPropagateSlots, .what = "staged propagate: spilled chunks"});
  spill_->drop(down);
  spill_->drop(kSpilledX);
}

uint64_t StagedFlows::bytes_needed(const ModelConfig& cfg, int64_t calib_tokens, bool fp_flow) {
  const int64_t widest = std::max({cfg.hidden, cfg.heads * cfg.head_dim, cfg.intermediate});
  return static_cast<uint64_t>(calib_tokens) * static_cast<uint64_t>(cfg.hidden + widest) * sizeof(float) *
         (fp_flow ? 2u : 1u);
}

uint64_t StagedFlows::spilled_bytes(const ModelConfig& cfg, int64_t calib_tokens, bool fp_flow) {
  // Per token, the widest moment of the passes: GateUp's (O's input, gate/up's
  // and x) and Down's (gate/up's input, down_proj's and x).
  const int64_t qd = cfg.heads * cfg.head_dim;
  const int64_t per_token = std::max(qd + 2 * cfg.hidden, 2 * cfg.hidden + cfg.intermediate);
  return static_cast<uint64_t>(calib_tokens) * static_cast<uint64_t>(per_token) * sizeof(float) * (fp_flow ? 2u : 1u);
}

}  // namespace streamq
