// Causal grouped-query attention on the GPU, flash-style: one block per
// (sequence, head, tile of query rows) streams the keys in tiles with an
// online softmax, so no more than one key tile of scores per query row ever
// exists. CPU twin: kernels/cpu/attention.cpp (same scale, same causal
// mask, same head mapping); fp32 throughout. The backward recomputes each
// query row's softmax from the scores and repeats the CPU twin's arithmetic
// (attention.cu's opening comment).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
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

// Device bytes of cuda_attention_backward's workspace: one softmax
// statistics record per query row (nseq * nheads * seqlen of them; never a
// score matrix).
size_t cuda_attention_backward_workspace_bytes(int64_t nseq, int64_t seqlen, int64_t nheads);

// dq [as q], dk and dv [as k] given dout = dL/dout [as q] (see
// Backend::attention_backward): dk and dv sum over the query heads sharing a
// kv head, each element written by one thread (no atomics), so results do
// not depend on scheduling. workspace: cuda_attention_backward_workspace_bytes
// of device memory, overwritten. The CPU twin's float and double operations
// in its order: bit-identical but for expf's rounding (CUDA's within 2 ulp,
// glibc's within 1). Throws InternalError on bad sizes or head_dim >
// kCudaAttentionMaxHeadDim. Asynchronous on `stream`.
void cuda_attention_backward(cudaStream_t stream, const float* q, const float* k, const float* v,
                             const float* dout, float* dq, float* dk, float* dv, void* workspace, int64_t nseq,
                             int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim);

}  // namespace streamq
