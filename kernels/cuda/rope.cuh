// Rotary position embedding and its backward on the GPU, HF's rotate_half
// convention. CPU twin: kernels/cpu/rope.cpp (same products and sum, never
// fused: bit-identical).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/backend.h"

namespace streamq {

// In place on x[nseq*seqlen, nheads*head_dim]; token t of a sequence has
// position t. table.cos/sin are device pointers [max_pos, head_dim/2].
// Throws InternalError on the CPU's argument errors. Asynchronous on `stream`.
void cuda_rope(cudaStream_t stream, float* x /*[nseq*seqlen, nheads*head_dim]*/, int64_t nseq,
               int64_t seqlen, int64_t nheads, int64_t head_dim, const RopeTable& table);

// The transpose of cuda_rope (the rotation by the opposite angle), in place
// on d = dL/d(rope(x)), leaving dL/dx. Same arguments, checks and layout.
void cuda_rope_backward(cudaStream_t stream, float* d /*[nseq*seqlen, nheads*head_dim]*/, int64_t nseq,
                        int64_t seqlen, int64_t nheads, int64_t head_dim, const RopeTable& table);

}  // namespace streamq
