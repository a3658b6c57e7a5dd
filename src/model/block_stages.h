// Internal to src/model: what a decoder block's forward (block_forward.cpp)
// and its backward (block_backward.cpp) share, so the ops both run exist once:
// sizes, the bf16 widening scratch, the linears and the MLP's activation.
#pragma once

#include <cstdint>

#include "kernels/backend.h"
#include "src/model/config.h"
#include "src/model/model.h"

namespace streamq {

struct BlockOps {
  Backend& be;
  const ModelConfig& c;
  const BlockView& w;
  int64_t t, d, hd, q_dim, kv_dim, inter;  // t: tokens
  float eps;
  // One scratch for the whole pass, not one per linear: a free on a device
  // waits for its queues (as cudaFree), which would serialize each linear
  // with the copies of a chunk pass. Empty unless a weight is bf16.
  Buffer<float> widened;

  // Throws InputError when w quantizes activations or the KV cache on a
  // backend without those ops. `what` names the pass in allocation errors.
  BlockOps(Backend& b, const ModelConfig& cfg, const BlockView& wv, int64_t tokens, const char* what);

  const LinearView& lin(const char* name) const { return w.linear(name); }
  // The linear's float32 weight [out, in]: its own, or (bf16) widened into
  // the scratch, so the same float32 GEMM runs on the bf16-rounded weight
  // (valid until the next call).
  const float* weight(const LinearView& l, int64_t in, int64_t out) const;
  // A [tokens, width] intermediate in the backend's memory.
  Buffer<float> rows(int64_t width, const char* what) const {
    return be.alloc<float>(static_cast<size_t>(t * width), what);
  }
  // y[tokens, out] = x[tokens, in] W^T (+ b).
  void linear(const LinearView& l, const float* x, float* y, int64_t in, int64_t out) const;
  // A linear's input as the W4A4 model sees it: quantized per token, before
  // the statistics capture it (the quantized flow calibrates on what it will run on).
  void quant_input(float* in, int64_t width, const char* what) const;
  // down_proj's input from the gate/up pre-activations (into gate_io, which
  // holds the gate on entry): SwiGLU, R4, the activation's quantization.
  void activation(float* gate_io, const float* up) const;
};

}  // namespace streamq
