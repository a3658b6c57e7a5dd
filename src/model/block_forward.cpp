// One decoder block's forward pass composed from backend ops, with a hook that
// sees each sub-layer group's input (where Hessians are accumulated). Its
// intermediates are buffers of the backend that runs it. The same forward
// with a tape (block_forward_tape) keeps what block_backward reads.
#include "src/model/model.h"

#include <algorithm>

#include "src/core/error.h"
#include "src/model/block_backward.h"
#include "src/model/block_stages.h"

namespace streamq {
namespace {

// The sequences of a forward pass: nseq of seqlen tokens, or (lens non-null)
// one per entry of lens, each of its own length.
struct SeqLayout {
  int64_t nseq = 0, seqlen = 0;
  const std::vector<int64_t>* lens = nullptr;
  int64_t tokens() const {
    if (!lens) return nseq * seqlen;
    int64_t t = 0;
    for (const int64_t l : *lens) t += l;
    return t;
  }
};

// RoPE and causal attention act within a sequence: one batched call for
// equal lengths, else one call per sequence (positions from 0 in each, no
// token attends across sequences, nothing padded).
void rope_seqs(Backend& be, float* x, const SeqLayout& s, int64_t nheads, int64_t hd, const RopeTable& rope) {
  if (!s.lens) return be.rope(x, s.nseq, s.seqlen, nheads, hd, rope);
  for (const int64_t l : *s.lens) {
    be.rope(x, 1, l, nheads, hd, rope);
    x += l * nheads * hd;
  }
}

void attention_seqs(Backend& be, const float* q, const float* k, const float* v, float* out, const SeqLayout& s,
                    int64_t nheads, int64_t nkv, int64_t hd) {
  if (!s.lens) return be.attention(q, k, v, out, s.nseq, s.seqlen, nheads, nkv, hd);
  for (const int64_t l : *s.lens) {
    be.attention(q, k, v, out, 1, l, nheads, nkv, hd);
    q += l * nheads * hd;
    out += l * nheads * hd;
    k += l * nkv * hd;
    v += l * nkv * hd;
  }
}

// The forward cut at the sub-layer groups' inputs. Each stage takes the
// group's input (consumed) and the residual stream x, runs the group's
// sub-layer and returns the next group's input; block_forward is these in a
// row, so a caller that keeps a stage's output (staged statistics) computes
// exactly the same values. With a tape, the stages also keep what
// block_backward reads (block_forward_tape): the buffers they would free are
// moved into it, and only what a later op overwrites in place is copied.
struct Stages : BlockOps {
  const RopeTable* rope;  // read by qkv() only
  const SeqLayout& seqs;
  BlockTape* tape;  // null: keep nothing

  Stages(Backend& b, const ModelConfig& cfg, const BlockView& wv, const RopeTable* r, const SeqLayout& s,
         BlockTape* tp = nullptr)
      : BlockOps(b, cfg, wv, s.tokens(), "block forward"), rope(r), seqs(s), tape(tp) {}

  // An intermediate the backward reads: into the tape's `slot`, else freed.
  void keep(Buffer<float>& b, Buffer<float> BlockTape::*slot) const {
    if (tape) tape->*slot = std::move(b);
    b.reset();
  }
  // A copy of src [tokens, width] into the tape's `slot`, before an op
  // overwrites it.
  void keep_copy(const float* src, int64_t width, Buffer<float> BlockTape::*slot, const char* what) const {
    if (!tape) return;
    tape->*slot = rows(width, what);
    be.copy_within((tape->*slot).data(), src, static_cast<uint64_t>(t * width) * sizeof(float));
  }

  // x's RMS-normed rows into h, as the linears after the norm read them.
  void norm_into(const float* x, const float* weight, Buffer<float>& h, const char* what) const {
    be.rmsnorm(x, weight, h.data(), t, d, eps);
    quant_input(h.data(), d, what);
  }
  // The q/k/v input: the normed hidden state.
  Buffer<float> begin(const float* x) const {
    keep_copy(x, d, &BlockTape::x_in, "block tape: block input");
    Buffer<float> h = rows(d, "block forward: normed hidden state");
    norm_into(x, w.input_norm, h, "q/k/v_proj input");
    return h;
  }
  // Attention: the o_proj input.
  Buffer<float> qkv(Buffer<float> h) const {
    Buffer<float> q = rows(q_dim, "block forward: q");
    Buffer<float> k = rows(kv_dim, "block forward: k");
    Buffer<float> v = rows(kv_dim, "block forward: v");
    linear(lin("self_attn.q_proj"), h.data(), q.data(), d, q_dim);
    linear(lin("self_attn.k_proj"), h.data(), k.data(), d, kv_dim);
    linear(lin("self_attn.v_proj"), h.data(), v.data(), d, kv_dim);
    keep(h, &BlockTape::h_attn);
    if (c.qk_norm) {  // Qwen3: RMSNorm over each head's vector before RoPE
      keep_copy(q.data(), q_dim, &BlockTape::q_raw, "block tape: q before QK-norm");
      keep_copy(k.data(), kv_dim, &BlockTape::k_raw, "block tape: k before QK-norm");
      be.rmsnorm(q.data(), w.q_norm, q.data(), t * c.heads, hd, eps);
      be.rmsnorm(k.data(), w.k_norm, k.data(), t * c.kv_heads, hd, eps);
    }
    rope_seqs(be, q.data(), seqs, c.heads, hd, *rope);
    rope_seqs(be, k.data(), seqs, c.kv_heads, hd, *rope);
    // R3: each head's query and key rotated alike, so their products are the
    // same and only a quantized key cache sees it: skipped without one (it
    // would only redraw the float rounding).
    if (w.head_hm && w.kv.enabled()) {
      be.hadamard_rows(q.data(), t * c.heads, hd, w.head_hm, w.head_m, nullptr, false);
      be.hadamard_rows(k.data(), t * c.kv_heads, hd, w.head_hm, w.head_m, nullptr, false);
    }
    if (w.kv.enabled()) {  // the KV cache as stored: per head, keys after RoPE
      fake_quant_rows(k.data(), t * c.kv_heads, hd, w.kv, "keys");
      fake_quant_rows(v.data(), t * c.kv_heads, hd, w.kv, "values");
    }
    Buffer<float> attn = rows(q_dim, "block forward: attention output");
    attention_seqs(be, q.data(), k.data(), v.data(), attn.data(), seqs, c.heads, c.kv_heads, hd);
    if (w.o_proj_hm) be.hadamard_rows(attn.data(), t, q_dim, w.o_proj_hm, w.o_proj_m, nullptr, false);
    quant_input(attn.data(), q_dim, "o_proj input");
    keep(q, &BlockTape::q);
    keep(k, &BlockTape::k);
    keep(v, &BlockTape::v);
    return attn;
  }
  // o_proj and the residual add: the gate/up input (x updated).
  Buffer<float> o(float* x, Buffer<float> attn) const {
    Buffer<float> h = rows(d, "block forward: normed hidden state");
    linear(lin("self_attn.o_proj"), attn.data(), h.data(), q_dim, d);
    keep(attn, &BlockTape::attn);
    be.add_inplace(x, h.data(), t * d);
    keep_copy(x, d, &BlockTape::x_mid, "block tape: residual after attention");
    norm_into(x, w.post_norm, h, "gate/up_proj input");
    return h;
  }
  // The MLP's activation: the down_proj input.
  Buffer<float> gate_up(Buffer<float> h) const {
    Buffer<float> gate = rows(inter, "block forward: gate");
    Buffer<float> up = rows(inter, "block forward: up");
    linear(lin("mlp.gate_proj"), h.data(), gate.data(), d, inter);
    linear(lin("mlp.up_proj"), h.data(), up.data(), d, inter);
    keep(h, &BlockTape::h_mlp);
    keep_copy(gate.data(), inter, &BlockTape::gate, "block tape: gate");
    activation(gate.data(), up.data());
    keep(up, &BlockTape::up);
    return gate;
  }
  // down_proj and the residual add: x is the block's output.
  void down(float* x, Buffer<float> act) const {
    Buffer<float> y = rows(d, "block forward: normed hidden state");
    linear(lin("mlp.down_proj"), act.data(), y.data(), inter, d);
    act.reset();
    be.add_inplace(x, y.data(), t * d);
  }
  Buffer<float> run(SubLayer group, float* x, Buffer<float> in) const {
    switch (group) {
      case SubLayer::Qkv: return qkv(std::move(in));
      case SubLayer::O: return o(x, std::move(in));
      case SubLayer::GateUp: return gate_up(std::move(in));
      case SubLayer::Down: down(x, std::move(in)); return {};
    }
    throw InternalError("block stage: unknown sub-layer group");
  }
};

void forward(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope, float* x,
             const SeqLayout& seqs, const CaptureFn& capture, int stop_after, BlockTape* tape = nullptr) {
  const Stages st(be, c, w, &rope, seqs, tape);
  const int64_t widths[kNumSubLayers] = {st.d, st.q_dim, st.d, st.inter};
  Buffer<float> in = st.begin(x);
  for (int g = 0; g < kNumSubLayers; ++g) {
    const SubLayer group = static_cast<SubLayer>(g);
    if (capture) capture(group, in.data(), x, st.t, widths[g]);
    if (stop_after == g) return;
    in = st.run(group, x, std::move(in));
  }
}

}  // namespace

BlockOps::BlockOps(Backend& b, const ModelConfig& cfg, const BlockView& wv, int64_t tokens, const char* what)
    : be(b), c(cfg), w(wv), t(tokens), d(cfg.hidden), hd(cfg.head_dim), q_dim(cfg.heads * cfg.head_dim),
      kv_dim(cfg.kv_heads * cfg.head_dim), inter(cfg.intermediate), eps(static_cast<float>(cfg.rms_eps)) {
  if ((w.act.enabled() || w.kv.enabled()) && !be.host_addressable())
    throw InputError("activation/KV quantization (--abits, --kv-bits) runs on --device cpu only so far; the " +
                     be.name() + " device has no such op yet");
  bool bf16 = false;
  for (const auto& [name, l] : w.linears) bf16 = bf16 || l.w_bf16 != nullptr;
  if (bf16)
    widened = be.alloc<float>(static_cast<size_t>(std::max({q_dim, kv_dim, inter}) * d),
                              std::string(what) + ": bf16 weight widened to float32");
}

const float* BlockOps::weight(const LinearView& l, int64_t in, int64_t out) const {
  if (!l.w_bf16) return l.w;
  if (widened.empty()) throw InternalError("block ops: a bf16 weight without a widening scratch");
  be.bf16_to_f32(l.w_bf16, widened.data(), out * in);
  return widened.data();
}

void BlockOps::linear(const LinearView& l, const float* x, float* y, int64_t in, int64_t out) const {
  be.gemm(Trans::N, Trans::T, t, out, in, 1.0f, x, in, weight(l, in, out), in, 0.0f, y, out);
  if (l.b) be.add_bias(y, l.b, t, out);
}

void BlockOps::quant_input(float* in, int64_t width, const char* what) const {
  if (w.act.enabled()) fake_quant_rows(in, t, width, w.act, what);
}

void BlockOps::activation(float* gate_io, const float* up) const {
  be.swiglu(gate_io, up, gate_io, t * inter);
  if (w.online_hm) be.hadamard_rows(gate_io, t, inter, w.online_hm, w.online_m, nullptr, false);
  quant_input(gate_io, inter, "down_proj input");
}

const LinearView& BlockView::linear(const std::string& name) const {
  const auto it = linears.find(name);
  if (it == linears.end()) throw InternalError("block weights have no linear " + name);
  return it->second;
}

BlockView host_view(const BlockWeights& w) {
  BlockView v;
  v.input_norm = w.input_norm.data();
  v.post_norm = w.post_norm.data();
  v.q_norm = w.q_norm.empty() ? nullptr : w.q_norm.data();
  v.k_norm = w.k_norm.empty() ? nullptr : w.k_norm.data();
  for (const auto& [name, l] : w.linears) v.linears[name] = {l.w.data(), l.b.empty() ? nullptr : l.b.data()};
  return v;
}

void block_forward(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope, float* x,
                   int64_t nseq, int64_t seqlen, const CaptureFn& capture, int stop_after) {
  forward(be, c, w, rope, x, SeqLayout{nseq, seqlen, nullptr}, capture, stop_after);
}

Buffer<float> block_stage_begin(Backend& be, const ModelConfig& c, const BlockView& w, const float* x, int64_t tokens) {
  const SeqLayout seqs{tokens, 1, nullptr};
  return Stages(be, c, w, nullptr, seqs).begin(x);  // begin() reads no RoPE table
}

Buffer<float> block_stage(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope,
                          const BlockSeqs& seqs, SubLayer group, float* x, Buffer<float> in) {
  const SeqLayout layout{seqs.nseq, seqs.seqlen, seqs.lens.empty() ? nullptr : &seqs.lens};
  return Stages(be, c, w, &rope, layout).run(group, x, std::move(in));
}

void block_forward(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope, float* x,
                   const std::vector<int64_t>& seq_lens, const CaptureFn& capture, int stop_after) {
  forward(be, c, w, rope, x, SeqLayout{static_cast<int64_t>(seq_lens.size()), 0, &seq_lens}, capture, stop_after);
}

void block_forward_tape(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope, float* x,
                        int64_t nseq, int64_t seqlen, BlockTape* tape) {
  if (!tape) throw InternalError("block_forward_tape: no tape");
  *tape = BlockTape{};
  tape->nseq = nseq;
  tape->seqlen = seqlen;
  forward(be, c, w, rope, x, SeqLayout{nseq, seqlen, nullptr}, {}, -1, tape);
}

void block_forward(Backend& be, const ModelConfig& c, const BlockWeights& w, const RopeTable& rope, float* x,
                   int64_t nseq, int64_t seqlen, const CaptureFn& capture, int stop_after) {
  block_forward(be, c, host_view(w), rope, x, nseq, seqlen, capture, stop_after);
}

void block_forward(Backend& be, const ModelConfig& c, const BlockWeights& w, const RopeTable& rope, float* x,
                   const std::vector<int64_t>& seq_lens, const CaptureFn& capture, int stop_after) {
  block_forward(be, c, host_view(w), rope, x, seq_lens, capture, stop_after);
}

}  // namespace streamq
