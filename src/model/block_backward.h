// A decoder block's backward pass (issue 18: gradient-based training of a
// block's weights, SDE and cross-layer learning): a forward that keeps what
// the backward needs (BlockTape), and the backward from dL/d(output) to
// dL/d(input) and the linears' dL/dW, composed from backend ops as
// block_forward is.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "kernels/backend.h"
#include "src/model/config.h"
#include "src/model/model.h"

namespace streamq {

// What a block's forward keeps for its backward (buffers in the backend's
// memory); the rest (the MLP's activation) is recomputed. t = nseq*seqlen.
struct BlockTape {
  int64_t nseq = 0, seqlen = 0;
  Buffer<float> x_in;          // [t, hidden] the block input (input_norm's input)
  Buffer<float> h_attn;        // [t, hidden] q/k/v_proj input (normed, as the linears read it)
  Buffer<float> q_raw, k_raw;  // [t, heads*hd], [t, kv_heads*hd] before QK-norm; empty without it
  Buffer<float> q, k, v;       // attention's inputs (after RoPE, R3, the KV cache's quantization)
  Buffer<float> attn;          // [t, heads*hd] o_proj input
  Buffer<float> x_mid;         // [t, hidden] the residual after attention (post_norm's input)
  Buffer<float> h_mlp;         // [t, hidden] gate/up_proj input
  Buffer<float> gate, up;      // [t, intermediate] before the activation
};

// x [nseq*seqlen, hidden] in: the block input; out: the block output,
// bit-identical to block_forward(be, c, w, rope, x, nseq, seqlen). Equal-length
// sequences only. *tape is overwritten (its buffers in be's memory).
void block_forward_tape(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope, float* x,
                        int64_t nseq, int64_t seqlen, BlockTape* tape);

// d [tokens, hidden] in: dL/d(output); out: dL/d(input), for the forward that
// filled `tape` (same be, c, w, rope). When dw is non-null, (*dw)[linear name]
// (e.g. "self_attn.q_proj"; pointers into be's memory, [out, in] row-major
// like LinearView::w) receives dL/dW of that linear (overwritten); linears
// absent from the map get none, a name the block lacks throws InternalError.
// Norm weights, biases and the Hadamard matrices are frozen (no gradients).
// Activation and KV-cache fake quantization are passed straight through (the
// straight-through estimator: their derivative taken as the identity).
void block_backward(Backend& be, const ModelConfig& c, const BlockView& w, const RopeTable& rope,
                    const BlockTape& tape, float* d, const std::map<std::string, float*>* dw);

}  // namespace streamq
