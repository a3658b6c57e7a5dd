// A decoder block's backward pass, composed from backend ops (the backward
// twins of rmsnorm, rope, attention and swiglu, and GEMMs): the chain rule
// back through the tape that block_forward_tape (block_forward.cpp) filled.
#include "src/model/block_backward.h"

#include <algorithm>

#include "src/core/error.h"
#include "src/model/block_stages.h"

namespace streamq {
namespace {

const char* const kBlockLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                     "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                     "mlp.down_proj"};

// The backward of a linear y = x W^T (+ b): dx = dy W (beta 0: overwrite,
// 1: accumulate), dW = dy^T x when the caller asked for it.
void linear_backward(const BlockOps& op, const char* name, const float* x, const float* dy, float* dx, float beta,
                     int64_t in, int64_t out, const std::map<std::string, float*>* dw) {
  const float* wt = op.weight(op.lin(name), in, out);
  op.be.gemm(Trans::N, Trans::N, op.t, in, out, 1.0f, dy, out, wt, in, beta, dx, in);
  if (!dw) return;
  const auto it = dw->find(name);
  if (it != dw->end()) op.be.gemm(Trans::T, Trans::N, out, in, op.t, 1.0f, dy, out, x, in, 0.0f, it->second, in);
}

}  // namespace

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
    be.copy_within(act.data(), tape.gate.data(), static_cast<uint64_t>(t * op.inter) * sizeof(float));
    op.activation(act.data(), tape.up.data());
    Buffer<float> dact = op.rows(op.inter, "block backward: d down_proj input");
    linear_backward(op, "mlp.down_proj", act.data(), d, dact.data(), 0.0f, op.inter, hidden, dw);
    act.reset();
    // The activation's fake quantization: straight through. R4 is
    // orthonormal, so its backward is its inverse.
    if (w.online_hm) be.hadamard_rows(dact.data(), t, op.inter, w.online_hm, w.online_m, nullptr, true);
    Buffer<float> dgate = op.rows(op.inter, "block backward: d gate");
    be.swiglu_backward(tape.gate.data(), tape.up.data(), dact.data(), dgate.data(), dact.data(), t * op.inter);
    const float* dup = dact.data();
    Buffer<float> dh = op.rows(hidden, "block backward: d gate/up input");
    linear_backward(op, "mlp.gate_proj", tape.h_mlp.data(), dgate.data(), dh.data(), 0.0f, hidden, op.inter, dw);
    linear_backward(op, "mlp.up_proj", tape.h_mlp.data(), dup, dh.data(), 1.0f, hidden, op.inter, dw);
    // h's fake quantization: straight through.
    be.rmsnorm_backward(tape.x_mid.data(), w.post_norm, dh.data(), dres.data(), t, hidden, op.eps);
    be.add_inplace(d, dres.data(), t * hidden);
  }

  // ---- attention: x_mid = x + o(attention(q(h), k(h), v(h))), h = input_norm(x).
  {
    Buffer<float> dattn = op.rows(op.q_dim, "block backward: d attention output");
    linear_backward(op, "self_attn.o_proj", tape.attn.data(), d, dattn.data(), 0.0f, op.q_dim, hidden, dw);
    // o_proj's input quantization: straight through; its online Hadamard
    // is orthonormal, so its backward is its inverse.
    if (w.o_proj_hm) be.hadamard_rows(dattn.data(), t, op.q_dim, w.o_proj_hm, w.o_proj_m, nullptr, true);
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
    linear_backward(op, "self_attn.q_proj", tape.h_attn.data(), dq.data(), dh.data(), 0.0f, hidden, op.q_dim, dw);
    linear_backward(op, "self_attn.k_proj", tape.h_attn.data(), dk.data(), dh.data(), 1.0f, hidden, op.kv_dim, dw);
    linear_backward(op, "self_attn.v_proj", tape.h_attn.data(), dv.data(), dh.data(), 1.0f, hidden, op.kv_dim, dw);
    be.rmsnorm_backward(tape.x_in.data(), w.input_norm, dh.data(), dres.data(), t, hidden, op.eps);
    be.add_inplace(d, dres.data(), t * hidden);
  }
}

}  // namespace streamq
