// Flash-style causal GQA attention (see attention.cuh).
//
// A block of kWarps warps owns kQueryTile consecutive query rows of one
// (sequence, head); each warp owns kRowsPerWarp of them. Per key tile of 32
// keys, staged in shared memory with Q: lane j scores key j0 + j against the
// row (a full head_dim dot product), the warp takes the tile's max and sum
// with shuffles, and the running output (lane l holds dims l, l+32, ...) is
// rescaled and gets sum_j p_j v_j. Output = acc / l at the end.
#include "kernels/cuda/attention.cuh"

#include <cmath>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"

namespace streamq {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kQueryTile = kWarps * kRowsPerWarp;
constexpr int kKeyTile = 32;  // one key per lane
constexpr int kDimsPerLane = static_cast<int>(kCudaAttentionMaxHeadDim / 32);
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// Shared memory: Q tile [kQueryTile, hd], then K and V tiles [kKeyTile, hd + 1]
// each. The +1 pad puts lane j's K row (read down d by every lane at once) in
// a different bank for every lane when hd is even.
inline size_t attention_smem_bytes(int64_t hd) {
  return static_cast<size_t>(kQueryTile * hd + 2 * kKeyTile * (hd + 1)) * sizeof(float);
}

__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(const float* __restrict__ q, const float* __restrict__ k,
                     const float* __restrict__ v, float* __restrict__ out, int64_t seqlen,
                     int64_t nheads, int64_t group, int hd, int64_t ntiles, float scale) {
  STREAMQ_DYNAMIC_SHARED(float, smem);
  const int ks = hd + 1;
  float* q_s = smem;
  float* k_s = q_s + kQueryTile * hd;
  float* v_s = k_s + kKeyTile * ks;

  // Heaviest tiles (the last rows see the most keys) are scheduled first.
  const int64_t block = blockIdx.x;
  const int64_t tile = ntiles - 1 - block % ntiles;
  const int64_t h = (block / ntiles) % nheads;
  const int64_t s = block / (ntiles * nheads);
  const int64_t q_stride = nheads * hd;
  const int64_t kv_stride = (nheads / group) * hd;
  const int64_t t0 = tile * kQueryTile;
  const int64_t t_end = seqlen < t0 + kQueryTile ? seqlen : t0 + kQueryTile;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  const float* q_base = q + s * seqlen * q_stride + h * hd;
  const float* k_base = k + s * seqlen * kv_stride + (h / group) * hd;
  const float* v_base = v + s * seqlen * kv_stride + (h / group) * hd;

  // Rows past the sequence end are zero-filled and never written out.
  for (int idx = threadIdx.x; idx < kQueryTile * hd; idx += blockDim.x) {
    const int r = idx / hd, d = idx % hd;
    q_s[idx] = t0 + r < t_end ? q_base[(t0 + r) * q_stride + d] : 0.0f;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] = 0.0f;
  }

  // Causal: the tile's last row sees keys [0, t_end).
  for (int64_t j0 = 0; j0 < t_end; j0 += kKeyTile) {
    __syncthreads();  // the previous tile's readers are done (first pass: Q is stored)
    for (int idx = threadIdx.x; idx < kKeyTile * hd; idx += blockDim.x) {
      const int j = idx / hd, d = idx % hd;
      const int64_t key = j0 + j;
      // Keys past t_end are zero, so every score below is finite.
      k_s[j * ks + d] = key < t_end ? k_base[key * kv_stride + d] : 0.0f;
      v_s[j * ks + d] = key < t_end ? v_base[key * kv_stride + d] : 0.0f;
    }
    __syncthreads();

#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r;
      const int64_t t = t0 + row;
      // Warp-uniform: a row past the end, or a tile entirely after the row.
      if (t >= t_end || j0 > t) continue;
      const float* q_row = q_s + row * hd;
      const float* k_row = k_s + lane * ks;
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot += q_row[d] * k_row[d];
      const bool visible = j0 + lane <= t;
      // The CPU's order: dot product first, then the scale.
      const float score = visible ? dot * scale : -INFINITY;
      // Key j0 <= t is visible, so m_new is finite; exp(-inf - m_new) = 0 on
      // the first tile clears the empty accumulator's scale.
      const float m_new = fmaxf(m[r], warp_max(score));
      const float p = visible ? expf(score - m_new) : 0.0f;
      const float correction = expf(m[r] - m_new);
      l[r] = l[r] * correction + warp_sum(p);
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] *= correction;
      // Only the visible keys: hidden ones have p = 0, and skipping them keeps
      // a non-finite v of a future token out of this row, as on the CPU.
      const int nvisible = t - j0 + 1 < kKeyTile ? static_cast<int>(t - j0 + 1) : kKeyTile;
      for (int j = 0; j < nvisible; ++j) {
        const float pj = __shfl_sync(kFullMask, p, j);
        const float* v_row = v_s + j * ks;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < hd) acc[r][i] += pj * v_row[d];
        }
      }
      m[r] = m_new;
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t t = t0 + warp * kRowsPerWarp + r;
    if (t >= t_end) continue;
    float* o_row = out + (s * seqlen + t) * q_stride + h * hd;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) o_row[d] = acc[r][i] / l[r];
    }
  }
}

}  // namespace

void cuda_attention(cudaStream_t stream, const float* q, const float* k, const float* v,
                    float* out, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                    int64_t head_dim) {
  const auto shapes = [&] {
    return "attention(nseq=" + std::to_string(nseq) + ", seqlen=" + std::to_string(seqlen) +
           ", nheads=" + std::to_string(nheads) + ", nkv=" + std::to_string(nkv) +
           ", head_dim=" + std::to_string(head_dim) + ")";
  };
  if (nseq < 0 || seqlen < 0 || nheads < 0 || nkv <= 0 || head_dim < 0 || nheads % nkv != 0) {
    throw InternalError(shapes() + ": sizes must be non-negative and nheads a multiple of nkv");
  }
  if (head_dim > kCudaAttentionMaxHeadDim) {
    throw InternalError(shapes() + ": the CUDA kernel takes head_dim up to " +
                        std::to_string(kCudaAttentionMaxHeadDim));
  }
  if (nseq == 0 || seqlen == 0 || nheads == 0 || head_dim == 0) return;
  const int64_t ntiles = (seqlen + kQueryTile - 1) / kQueryTile;
  const int64_t blocks = nseq * nheads * ntiles;
  if (blocks > INT32_MAX) throw InternalError(shapes() + ": too many query tiles for one grid");
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  STREAMQ_LAUNCH(attention_kernel, static_cast<unsigned>(blocks), kWarps * 32,
                 attention_smem_bytes(head_dim), stream)(q, k, v, out, seqlen, nheads, nheads / nkv,
                                                         static_cast<int>(head_dim), ntiles, scale);
  CUDA_CHECK_LAUNCH("attention_kernel in " + shapes());
}

}  // namespace streamq
