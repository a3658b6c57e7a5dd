// QuaRot's offline rotation of the residual stream (issue 17): an orthogonal
// R of the hidden dimension fused into the weights, so that the rotated
// model carries x R wherever the original carries x and computes the same
// logits. First the RMSNorm weights are folded into the linears that read
// the normed stream (a norm with weight 1 commutes with R: rms(x R) =
// rms(x)); then every linear that reads the residual stream is rotated on its
// input side (W <- W R), every one that writes it on its output side
// (W <- R^T W, b <- b R), the embedding's rows E <- E R, and the head
// (final norm folded) W <- W R. Block by block, as the pipeline streams.
//
//   const HadamardTransform h(hidden, random_signs(hidden, seed));  // src/methods/hadamard.h
//   const Rotation r{hidden, [&](float* x, int64_t n) { h.apply(x, n); },
//                    [&](float* x, int64_t n) { h.inverse(x, n); }};
//   rotate_block(block, hidden, r);              // each block as it is loaded
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "src/model/model.h"

namespace streamq {

// An orthogonal n x n matrix R acting on row vectors, in place on x[rows, n]:
// `right` sets each row to x R, `right_transposed` to x R^T.
struct Rotation {
  int64_t n = 0;
  std::function<void(float* x, int64_t rows)> right, right_transposed;
};

// One block, in place: norms folded (they become 1), q/k/v and gate/up
// rotated on their input side, o_proj and down_proj (and their biases) on
// their output side. q/k norms (Qwen3) and q/k/v biases act in head space
// and are left alone. InternalError when r.n is not the hidden size.
void rotate_block(BlockWeights& w, int64_t hidden, const Rotation& r);

// The weight side of the online Hadamard before down_proj (BlockView::
// online_hm): each row of down_proj's weight [hidden, intermediate] gets the
// transform its input gets, so their products are unchanged. InternalError
// when r.n is not the intermediate size.
void rotate_down_input(BlockWeights& w, int64_t intermediate, const Rotation& r);

// The weight side of the online Hadamard before o_proj (BlockView::
// o_proj_hm): each row of o_proj's weight [hidden, heads * head_dim] gets the
// transform the attention output gets. After rotate_value_heads when both
// are applied (the attention output then carries R2 first). InternalError
// when r.n is not heads * head_dim.
void rotate_o_input(BlockWeights& w, const ModelConfig& cfg, const Rotation& r);

// QuaRot's R2, offline: each value head rotated by r (of head_dim) and
// o_proj's input columns of every attention head by the same, so attention's
// output per head is out_h r and o_proj's product unchanged: v_proj's rows
// of each KV head (and their bias) on the output side, W_v,h <- r^T W_v,h,
// and o_proj's columns of each head W_o,h <- W_o,h r. The values (the V
// cache) are then rotated per head. InternalError when r.n is not head_dim.
void rotate_value_heads(BlockWeights& w, const ModelConfig& cfg, const Rotation& r);

// Embedding rows e[vocab, hidden] <- e R.
void rotate_embedding(std::vector<float>& e, int64_t hidden, const Rotation& r);

// The head: the final norm folded into w[vocab, hidden] (the norm becomes 1),
// then w <- w R.
void rotate_head(std::vector<float>& w, std::vector<float>& final_norm, const Rotation& r);

}  // namespace streamq
