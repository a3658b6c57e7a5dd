// Causal grouped-query attention on the GPU, flash-style: one block per
// (sequence, head, tile of query rows) streams the keys in tiles with an
// online softmax, so no more than one key tile of scores per query row ever
// exists. CPU twin: kernels/cpu/attention.cpp (same scale, same causal
// mask, same head mapping); fp32 throughout.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// The largest head_dim the kernel takes (its per-lane accumulator registers).
constexpr int64_t kCudaAttentionMaxHeadDim = 128;

// softmax(q k^T / sqrt(head_dim)) v per head, causal; query head h reads kv
// head h / (nheads / nkv). q and out [nseq*seqlen, nheads*head_dim], k and v
// [nseq*seqlen, nkv*head_dim]. Throws InternalError on bad sizes or
// head_dim > kCudaAttentionMaxHeadDim. Asynchronous on `stream`.
void cuda_attention(cudaStream_t stream, const float* q, const float* k, const float* v,
                    float* out, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                    int64_t head_dim);

}  // namespace streamq
