// RoPE and its backward (see rope.cuh): one thread per (token, head,
// i < head_dim/2) pair of elements i and i + head_dim/2.
#include "kernels/cuda/rope.cuh"

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

// The rotation by +angle (the forward: [[c, -s], [s, c]]) or, with kInverse,
// by -angle (its transpose, the backward: lo = d1 c + d2 s, hi = d2 c - d1 s,
// in the CPU twin's order).
template <bool kInverse>
__global__ void rope_kernel(float* __restrict__ x, const float* __restrict__ cos_table,
                            const float* __restrict__ sin_table, int64_t pairs, int64_t seqlen,
                            int64_t nheads, int64_t half) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < pairs;
       idx += stride) {
    const int64_t i = idx % half;
    const int64_t head = (idx / half) % nheads;
    const int64_t row = idx / (half * nheads);
    const int64_t pos = row % seqlen;  // every sequence starts at position 0
    const float c = cos_table[pos * half + i];
    const float s = sin_table[pos * half + i];
    float* lo = x + row * (nheads * 2 * half) + head * 2 * half + i;
    float* hi = lo + half;
    const float x1 = *lo, x2 = *hi;
    // _rn intrinsics: nvcc would otherwise fuse into an FMA and differ from
    // the CPU's separately rounded products.
    if constexpr (kInverse) {
      *lo = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
      *hi = __fsub_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    } else {
      *lo = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
      *hi = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
  }
}

// The CPU backend's checks, in its order; `op` names the caller in the message.
void check_rope_args(const char* op, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                     const RopeTable& table) {
  const int64_t half = head_dim / 2;
  const auto shapes = [&] {
    return std::string(op) + "(nseq=" + std::to_string(nseq) + ", seqlen=" + std::to_string(seqlen) +
           ", nheads=" + std::to_string(nheads) + ", head_dim=" + std::to_string(head_dim) + ", table " +
           std::to_string(table.max_pos) + "x" + std::to_string(table.half_dim) + ")";
  };
  if (nseq < 0 || seqlen < 0 || nheads < 0 || head_dim < 0) {
    throw InternalError(shapes() + ": negative size");
  }
  if (head_dim % 2 != 0 || table.half_dim != half) {
    throw InternalError(shapes() + ": head_dim must be even and equal 2 * table.half_dim");
  }
  if (seqlen > table.max_pos) throw InternalError(shapes() + ": seqlen exceeds the table");
  if (seqlen > 0 && (table.cos == nullptr || table.sin == nullptr)) {
    throw InternalError(shapes() + ": table has no cos/sin data");
  }
}

std::string rope_shapes(const char* op, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim) {
  return std::string(op) + "(nseq=" + std::to_string(nseq) + ", seqlen=" + std::to_string(seqlen) +
         ", nheads=" + std::to_string(nheads) + ", head_dim=" + std::to_string(head_dim) + ")";
}

// `op` (rope or rope_backward) names the caller; kInverse picks the rotation.
template <bool kInverse>
void launch_rope(const char* op, cudaStream_t stream, float* x, int64_t nseq, int64_t seqlen, int64_t nheads,
                 int64_t head_dim, const RopeTable& table) {
  check_rope_args(op, nseq, seqlen, nheads, head_dim, table);
  const int64_t half = head_dim / 2;
  const int64_t pairs = nseq * seqlen * nheads * half;
  if (pairs == 0) return;
  STREAMQ_LAUNCH(rope_kernel<kInverse>, cuda_detail::elementwise_blocks(pairs), cuda_detail::kElementwiseBlock,
                 0, stream)(x, table.cos, table.sin, pairs, seqlen, nheads, half);
  CUDA_CHECK_LAUNCH(std::string(kInverse ? "rope_kernel<true>" : "rope_kernel<false>") + " in " +
                    rope_shapes(op, nseq, seqlen, nheads, head_dim));
}

}  // namespace

void cuda_rope(cudaStream_t stream, float* x, int64_t nseq, int64_t seqlen, int64_t nheads,
               int64_t head_dim, const RopeTable& table) {
  launch_rope</*kInverse=*/false>("rope", stream, x, nseq, seqlen, nheads, head_dim, table);
}

void cuda_rope_backward(cudaStream_t stream, float* d, int64_t nseq, int64_t seqlen, int64_t nheads,
                        int64_t head_dim, const RopeTable& table) {
  launch_rope</*kInverse=*/true>("rope_backward", stream, d, nseq, seqlen, nheads, head_dim, table);
}

}  // namespace streamq
