// A decoder block's backward pass, composed from backend ops (the backward
// twins of rmsnorm, rope, attention and swiglu, and GEMMs): block_forward's
// sequence of ops with a tape, then the chain rule back through it.
#include "src/model/block_backward.h"

#include <algorithm>

#include "src/core/error.h"

namespace streamq {
namespace {

const char* const kBlockLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                     "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                     "mlp.down_proj"};

// What the forward and the backward share: sizes, scratch, and the linears'
// float32 weights (a bf16 weight widened into one scratch, as block_forward's
// linear_forward does, so both run the same float32 GEMM).
struct BlockOps {
  Backend& be;
  const ModelConfig& c;
  const BlockView& w;
  int64_t t, d, hd, q_dim, kv_dim, inter;
  float eps;
  Buffer<float> widened;  // empty unless a weight is bf16

  BlockOps(Backend& b, const ModelConfig& cfg, const BlockView& wv, int64_t tokens, const char* what)
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
  const LinearView& lin(const char* name) const { return w.linear(name); }
  // The linear's float32 weight [out, in]: its own, or widened into the scratch
  // (valid until the next call).
  const float* weight(const LinearView& l, int64_t in, int64_t out) const {
    if (!l.w_bf16) return l.w;
    be.bf16_to_f32(l.w_bf16, widened.data(), out * in);
    return widened.data();
  }
  Buffer<float> rows(int64_t width, const char* what) const {
    return be.alloc<float>(static_cast<size_t>(t * width), what);
  }
  void copy(float* dst, const float* src, int64_t n) const {
    be.copy_within(dst, src, static_cast<uint64_t>(n) * sizeof(float));
  }

  // ---- the forward, op for op as block_forward.cpp's Stages
  void linear(const LinearView& l, const float* x, float* y, int64_t in, int64_t out) const {
    be.gemm(Trans::N, Trans::T, t, out, in, 1.0f, x, in, weight(l, in, out), in, 0.0f, y, out);
    if (l.b) be.add_bias(y, l.b, t, out);
  }
  void quant_input(float* in, int64_t width, const char* what) const {
    if (w.act.enabled()) fake_quant_rows(in, t, width, w.act, what);
  }
  // down_proj's input from the gate/up pre-activations (into gate_io, which
  // holds the gate on entry): SwiGLU, R4, the activation's quantization.
  void activation(float* gate_io, const float* up) const {
    be.swiglu(gate_io, up, gate_io, t * inter);
    if (w.online_hm) be.hadamard_rows(gate_io, t, inter, w.online_hm, w.online_m, nullptr, false);
    quant_input(gate_io, inter, "down_proj input");
  }

  // ---- the backward of a linear y = x W^T (+ b): dx = dy W (beta 0: overwrite,
  // 1: accumulate), dW = dy^T x when the caller asked for it.
  void linear_backward(const char* name, const float* x, const float* dy, float* dx, float beta, int64_t in,
                       int64_t out, const std::map<std::string, float*>* dw) const {
    const float* wt = weight(lin(name), in, out);
    be.gemm(Trans::N, Trans::N, t, in, out, 1.0f, dy, out, wt, in, beta, dx, in);
    if (!dw) return;
    const auto it = dw->find(name);
    if (it != dw->end()) be.gemm(Trans::T, Trans::N, out, in, t, 1.0f, dy, out, x, in, 0.0f, it->second, in);
  }
};

}  // namespace

void block_forward_tape(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope, float* x,
                        int64_t nseq, int64_t seqlen, BlockTape* tape) {
  if (!tape) throw InternalError("block_forward_tape: no tape");
  const BlockOps op(be, c, w, nseq * seqlen, "block forward (tape)");
  const int64_t t = op.t, d = op.d, hd = op.hd;
  BlockTape& tp = *tape;
  tp = BlockTape{};
  tp.nseq = nseq;
  tp.seqlen = seqlen;
  tp.x_in = op.rows(d, "block tape: block input");
  op.copy(tp.x_in.data(), x, t * d);

  // Attention.
  tp.h_attn = op.rows(d, "block tape: q/k/v input");
  be.rmsnorm(x, w.input_norm, tp.h_attn.data(), t, d, op.eps);
  op.quant_input(tp.h_attn.data(), d, "q/k/v_proj input");
  tp.q = op.rows(op.q_dim, "block tape: q");
  tp.k = op.rows(op.kv_dim, "block tape: k");
  tp.v = op.rows(op.kv_dim, "block tape: v");
  op.linear(op.lin("self_attn.q_proj"), tp.h_attn.data(), tp.q.data(), d, op.q_dim);
  op.linear(op.lin("self_attn.k_proj"), tp.h_attn.data(), tp.k.data(), d, op.kv_dim);
  op.linear(op.lin("self_attn.v_proj"), tp.h_attn.data(), tp.v.data(), d, op.kv_dim);
  if (c.qk_norm) {
    tp.q_raw = op.rows(op.q_dim, "block tape: q before QK-norm");
    tp.k_raw = op.rows(op.kv_dim, "block tape: k before QK-norm");
    op.copy(tp.q_raw.data(), tp.q.data(), t * op.q_dim);
    op.copy(tp.k_raw.data(), tp.k.data(), t * op.kv_dim);
    be.rmsnorm(tp.q.data(), w.q_norm, tp.q.data(), t * c.heads, hd, op.eps);
    be.rmsnorm(tp.k.data(), w.k_norm, tp.k.data(), t * c.kv_heads, hd, op.eps);
  }
  be.rope(tp.q.data(), nseq, seqlen, c.heads, hd, rope);
  be.rope(tp.k.data(), nseq, seqlen, c.kv_heads, hd, rope);
  if (w.head_hm && w.kv.enabled()) {
    be.hadamard_rows(tp.q.data(), t * c.heads, hd, w.head_hm, w.head_m, nullptr, false);
    be.hadamard_rows(tp.k.data(), t * c.kv_heads, hd, w.head_hm, w.head_m, nullptr, false);
  }
  if (w.kv.enabled()) {
    fake_quant_rows(tp.k.data(), t * c.kv_heads, hd, w.kv, "keys");
    fake_quant_rows(tp.v.data(), t * c.kv_heads, hd, w.kv, "values");
  }
  tp.attn = op.rows(op.q_dim, "block tape: attention output");
  be.attention(tp.q.data(), tp.k.data(), tp.v.data(), tp.attn.data(), nseq, seqlen, c.heads, c.kv_heads, hd);
  op.quant_input(tp.attn.data(), op.q_dim, "o_proj input");
  {
    Buffer<float> h = op.rows(d, "block forward (tape): o_proj output");
    op.linear(op.lin("self_attn.o_proj"), tp.attn.data(), h.data(), op.q_dim, d);
    be.add_inplace(x, h.data(), t * d);
  }

  // MLP.
  tp.x_mid = op.rows(d, "block tape: residual after attention");
  op.copy(tp.x_mid.data(), x, t * d);
  tp.h_mlp = op.rows(d, "block tape: gate/up input");
  be.rmsnorm(x, w.post_norm, tp.h_mlp.data(), t, d, op.eps);
  op.quant_input(tp.h_mlp.data(), d, "gate/up_proj input");
  tp.gate = op.rows(op.inter, "block tape: gate");
  tp.up = op.rows(op.inter, "block tape: up");
  op.linear(op.lin("mlp.gate_proj"), tp.h_mlp.data(), tp.gate.data(), d, op.inter);
  op.linear(op.lin("mlp.up_proj"), tp.h_mlp.data(), tp.up.data(), d, op.inter);
  Buffer<float> act = op.rows(op.inter, "block forward (tape): down_proj input");
  op.copy(act.data(), tp.gate.data(), t * op.inter);
  op.activation(act.data(), tp.up.data());
  Buffer<float> y = op.rows(d, "block forward (tape): down_proj output");
  op.linear(op.lin("mlp.down_proj"), act.data(), y.data(), op.inter, d);
  be.add_inplace(x, y.data(), t * d);
}

void block_backward(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope,
                    const BlockTape& tape, float* d, const std::map<std::string, float*>* dw) {
  if (dw)
    for (const auto& [name, p] : *dw) {
      if (!std::count_if(std::begin(kBlockLinears), std::end(kBlockLinears),
                         [&](const char* n) { return name == n; }))
        throw InternalError("block_backward: no linear " + name + " in a decoder block");
      (void)w.linear(name);  // throws when this block lacks it
      if (!p) throw InternalError("block_backward: null gradient buffer for " + name);
    }
  const BlockOps op(be, c, w, tape.nseq * tape.seqlen, "block backward");
  const int64_t t = op.t, hd = op.hd, hidden = op.d;
  if (tape.x_in.size() != static_cast<size_t>(t * hidden))
    throw InternalError("block_backward: the tape does not hold a forward of this block's shapes");
  // d stays dL/d(residual stream): the residual adds pass it through, and
  // each branch's input gradient is added to it.
  Buffer<float> dres = op.rows(hidden, "block backward: norm input gradient");

  // ---- MLP: out = x_mid + down(act(gate(h), up(h))), h = post_norm(x_mid).
  {
    Buffer<float> act = op.rows(op.inter, "block backward: down_proj input (recomputed)");
    op.copy(act.data(), tape.gate.data(), t * op.inter);
    op.activation(act.data(), tape.up.data());
    Buffer<float> dact = op.rows(op.inter, "block backward: d down_proj input");
    op.linear_backward("mlp.down_proj", act.data(), d, dact.data(), 0.0f, op.inter, hidden, dw);
    act.reset();
    // The activation's fake quantization: straight through. R4 is
    // orthonormal, so its backward is its inverse.
    if (w.online_hm) be.hadamard_rows(dact.data(), t, op.inter, w.online_hm, w.online_m, nullptr, true);
    Buffer<float> dgate = op.rows(op.inter, "block backward: d gate");
    be.swiglu_backward(tape.gate.data(), tape.up.data(), dact.data(), dgate.data(), dact.data(), t * op.inter);
    const float* dup = dact.data();
    Buffer<float> dh = op.rows(hidden, "block backward: d gate/up input");
    op.linear_backward("mlp.gate_proj", tape.h_mlp.data(), dgate.data(), dh.data(), 0.0f, hidden, op.inter, dw);
    op.linear_backward("mlp.up_proj", tape.h_mlp.data(), dup, dh.data(), 1.0f, hidden, op.inter, dw);
    // h's fake quantization: straight through.
    be.rmsnorm_backward(tape.x_mid.data(), w.post_norm, dh.data(), dres.data(), t, hidden, op.eps);
    be.add_inplace(d, dres.data(), t * hidden);
  }

  // ---- attention: x_mid = x + o(attention(q(h), k(h), v(h))), h = input_norm(x).
  {
    Buffer<float> dattn = op.rows(op.q_dim, "block backward: d attention output");
    op.linear_backward("self_attn.o_proj", tape.attn.data(), d, dattn.data(), 0.0f, op.q_dim, hidden, dw);
    Buffer<float> dq = op.rows(op.q_dim, "block backward: dq");
    Buffer<float> dk = op.rows(op.kv_dim, "block backward: dk");
    Buffer<float> dv = op.rows(op.kv_dim, "block backward: dv");
    be.attention_backward(tape.q.data(), tape.k.data(), tape.v.data(), dattn.data(), dq.data(), dk.data(),
                          dv.data(), tape.nseq, tape.seqlen, c.heads, c.kv_heads, hd);
    dattn.reset();
    // The KV cache's fake quantization: straight through; R3 orthonormal.
    if (w.head_hm && w.kv.enabled()) {
      be.hadamard_rows(dq.data(), t * c.heads, hd, w.head_hm, w.head_m, nullptr, true);
      be.hadamard_rows(dk.data(), t * c.kv_heads, hd, w.head_hm, w.head_m, nullptr, true);
    }
    be.rope_backward(dq.data(), tape.nseq, tape.seqlen, c.heads, hd, rope);
    be.rope_backward(dk.data(), tape.nseq, tape.seqlen, c.kv_heads, hd, rope);
    if (c.qk_norm) {  // dx may alias dy
      be.rmsnorm_backward(tape.q_raw.data(), w.q_norm, dq.data(), dq.data(), t * c.heads, hd, op.eps);
      be.rmsnorm_backward(tape.k_raw.data(), w.k_norm, dk.data(), dk.data(), t * c.kv_heads, hd, op.eps);
    }
    Buffer<float> dh = op.rows(hidden, "block backward: d q/k/v input");
    op.linear_backward("self_attn.q_proj", tape.h_attn.data(), dq.data(), dh.data(), 0.0f, hidden, op.q_dim, dw);
    op.linear_backward("self_attn.k_proj", tape.h_attn.data(), dk.data(), dh.data(), 1.0f, hidden, op.kv_dim, dw);
    op.linear_backward("self_attn.v_proj", tape.h_attn.data(), dv.data(), dh.data(), 1.0f, hidden, op.kv_dim, dw);
    be.rmsnorm_backward(tape.x_in.data(), w.input_norm, dh.data(), dres.data(), t, hidden, op.eps);
    be.add_inplace(d, dres.data(), t * hidden);
  }
}

}  // namespace streamq
