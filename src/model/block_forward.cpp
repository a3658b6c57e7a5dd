// One decoder block's forward pass composed from backend ops, with a hook that
// sees each sub-layer group's input (where Hessians are accumulated). Its
// intermediates are buffers of the backend that runs it.
#include "src/model/model.h"

namespace streamq {
namespace {

// y[tokens, out] = x[tokens, in] W^T (+ b).
void linear(Backend& be, const Linear& l, const float* x, float* y, int64_t tokens, int64_t in, int64_t out) {
  be.gemm(Trans::N, Trans::T, tokens, out, in, 1.0f, x, in, l.w.data(), in, 0.0f, y, out);
  if (!l.b.empty()) be.add_bias(y, l.b.data(), tokens, out);
}

}  // namespace

void block_forward(Backend& be, const ModelConfig& c, const BlockWeights& w, const RopeTable& rope, float* x,
                   int64_t nseq, int64_t seqlen, const CaptureFn& capture, int stop_after) {
  const int64_t t = nseq * seqlen, d = c.hidden, hd = c.head_dim;
  const int64_t q_dim = c.heads * hd, kv_dim = c.kv_heads * hd, inter = c.intermediate;
  const float eps = static_cast<float>(c.rms_eps);
  auto reached = [&](SubLayer s, const float* in, int64_t width) {
    if (capture) capture(s, in, x, t, width);
    return stop_after == static_cast<int>(s);
  };
  auto lin = [&](const char* name) -> const Linear& { return w.linears.at(name); };

  Buffer<float> h = be.alloc<float>(static_cast<size_t>(t * d), "block forward: normed hidden state");
  be.rmsnorm(x, w.input_norm.data(), h.data(), t, d, eps);
  if (reached(SubLayer::Qkv, h.data(), d)) return;

  Buffer<float> q = be.alloc<float>(static_cast<size_t>(t * q_dim), "block forward: q");
  Buffer<float> k = be.alloc<float>(static_cast<size_t>(t * kv_dim), "block forward: k");
  Buffer<float> v = be.alloc<float>(static_cast<size_t>(t * kv_dim), "block forward: v");
  linear(be, lin("self_attn.q_proj"), h.data(), q.data(), t, d, q_dim);
  linear(be, lin("self_attn.k_proj"), h.data(), k.data(), t, d, kv_dim);
  linear(be, lin("self_attn.v_proj"), h.data(), v.data(), t, d, kv_dim);
  if (c.qk_norm) {  // Qwen3: RMSNorm over each head's vector before RoPE
    be.rmsnorm(q.data(), w.q_norm.data(), q.data(), t * c.heads, hd, eps);
    be.rmsnorm(k.data(), w.k_norm.data(), k.data(), t * c.kv_heads, hd, eps);
  }
  be.rope(q.data(), nseq, seqlen, c.heads, hd, rope);
  be.rope(k.data(), nseq, seqlen, c.kv_heads, hd, rope);
  Buffer<float> attn = be.alloc<float>(static_cast<size_t>(t * q_dim), "block forward: attention output");
  be.attention(q.data(), k.data(), v.data(), attn.data(), nseq, seqlen, c.heads, c.kv_heads, hd);
  q.reset();
  k.reset();
  v.reset();
  if (reached(SubLayer::O, attn.data(), q_dim)) return;

  linear(be, lin("self_attn.o_proj"), attn.data(), h.data(), t, q_dim, d);
  be.add_inplace(x, h.data(), t * d);
  be.rmsnorm(x, w.post_norm.data(), h.data(), t, d, eps);
  if (reached(SubLayer::GateUp, h.data(), d)) return;

  Buffer<float> gate = be.alloc<float>(static_cast<size_t>(t * inter), "block forward: gate");
  Buffer<float> up = be.alloc<float>(static_cast<size_t>(t * inter), "block forward: up");
  linear(be, lin("mlp.gate_proj"), h.data(), gate.data(), t, d, inter);
  linear(be, lin("mlp.up_proj"), h.data(), up.data(), t, d, inter);
  be.swiglu(gate.data(), up.data(), gate.data(), t * inter);
  if (reached(SubLayer::Down, gate.data(), inter)) return;

  linear(be, lin("mlp.down_proj"), gate.data(), h.data(), t, inter, d);
  be.add_inplace(x, h.data(), t * d);
}

}  // namespace streamq
