// Flash-style causal GQA attention (see attention.cuh).
//
// A block of kWarps warps owns kQueryTile consecutive query rows of one
// (sequence, head); each warp owns kRowsPerWarp of them. Per key tile of 32
// keys, staged in shared memory with Q: lane j scores key j0 + j against the
// row (a full head_dim dot product), the warp takes the tile's max and sum
// with shuffles, and the running output (lane l holds dims l, l+32, ...) is
// rescaled and gets sum_j p_j v_j. Output = acc / l at the end.
//
// The backward (attention_backward_*, after the forward) repeats the CPU
// twin's arithmetic (kernels/cpu/attention.cpp: float dots summed over d in
// order, float softmax, double sums in the CPU's order) in two kernels:
//   rows:  one warp per query row (sequence, head, i) recomputes its softmax
//          from the scores (passes over keys 0..i, lane j scoring key j of a
//          tile of 32; nothing but the row's statistics is kept), writes
//          max, denominator and D_i = sum_j p_ij dp_ij to the workspace, and
//          dq_i = scale sum_j ds_ij k_j (lane l owns dims l, l+32, ...).
//   keys:  one block per (sequence, kv head, tile of 16 keys) owns those
//          keys' dk and dv: for every query head of the group and every row
//          i from the tile's first key on, in the CPU's order, it rebuilds
//          p_ij and ds_ij from the row statistics and adds ds_ij q_i and
//          p_ij dout_i. One writer per output element, no atomics: the
//          result does not depend on scheduling.
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

// ---- backward

constexpr int kBackwardRowWarps = 4;        // query rows per block of the rows kernel, one per warp
constexpr int kBackwardKeyTile = 16;        // keys per block of the keys kernel
constexpr int kBackwardKeyThreads = 128;    // one per dim: kCudaAttentionMaxHeadDim
static_assert(kBackwardKeyThreads >= kCudaAttentionMaxHeadDim && kBackwardKeyThreads >= kBackwardKeyTile);
constexpr int64_t kMaxBackwardRowBlocks = 1 << 16;  // more rows: the grid-stride loop

// A query row's softmax, as the CPU twin rounds it: max of the float scores,
// denominator = float(double sum of the float exps), and D = sum_j p_j dp_j
// in double.
struct AttentionRowStats {
  double big_d;
  float max, denom;
};

// sum_{d < hd} a[d] * b[d] in float, in d order, each operation rounded (the
// CPU twin's loop; nvcc would otherwise contract it into FMAs).
__device__ __forceinline__ float dot_in_order(const float* a, const float* b, int hd) {
  float dot = 0.0f;
  for (int d = 0; d < hd; ++d) dot = __fadd_rn(dot, __fmul_rn(a[d], b[d]));
  return dot;
}

struct BackwardShape {
  int64_t seqlen, nheads, nkv, group, q_stride, kv_stride;
  int hd;
  float scale;
};

// The rows kernel. Every loop bound is warp-uniform (it depends on the row
// only), so every lane takes part in every shuffle; lanes whose key is past
// the row hold a masked score and are skipped by the in-order sums.
__global__ void __launch_bounds__(kBackwardRowWarps * 32)
    attention_backward_rows_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                   const float* __restrict__ v, const float* __restrict__ dout,
                                   float* __restrict__ dq, AttentionRowStats* __restrict__ stats, int64_t rows,
                                   BackwardShape sh) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kBackwardRowWarps;
  const int hd = sh.hd;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * kBackwardRowWarps + threadIdx.x / 32; w < rows;
       w += warps) {
    // Rows in the order (sequence, head, i), the stats' layout, the longest
    // (last) rows first.
    const int64_t row = rows - 1 - w;
    const int64_t i = row % sh.seqlen;
    const int64_t h = (row / sh.seqlen) % sh.nheads;
    const int64_t s = row / (sh.seqlen * sh.nheads);
    const float* q_row = q + (s * sh.seqlen + i) * sh.q_stride + h * hd;
    const float* do_row = dout + (s * sh.seqlen + i) * sh.q_stride + h * hd;
    const float* k_base = k + s * sh.seqlen * sh.kv_stride + (h / sh.group) * hd;
    const float* v_base = v + s * sh.seqlen * sh.kv_stride + (h / sh.group) * hd;
    // Lane's score of key j (j <= i), the CPU's: the dot first, then the scale.
    const auto score = [&](int64_t j) { return __fmul_rn(dot_in_order(q_row, k_base + j * sh.kv_stride, hd), sh.scale); };

    // Pass 1: the max (exact in any order).
    float mx = -INFINITY;
    for (int64_t j0 = 0; j0 <= i; j0 += 32) {
      const int64_t j = j0 + lane;
      if (j <= i) mx = fmaxf(mx, score(j));
    }
    mx = warp_max(mx);
    // Pass 2: sum_j exp(s_j - mx) in double, in j order (every lane adds the
    // tile's terms one by one, so all hold the same sum).
    double sum = 0.0;
    for (int64_t j0 = 0; j0 <= i; j0 += 32) {
      const int64_t j = j0 + lane;
      const float e = j <= i ? expf(__fsub_rn(score(j), mx)) : 0.0f;
      const int n = i - j0 + 1 < 32 ? static_cast<int>(i - j0 + 1) : 32;
      for (int jj = 0; jj < n; ++jj) sum = __dadd_rn(sum, static_cast<double>(__shfl_sync(kFullMask, e, jj)));
    }
    const float denom = static_cast<float>(sum);
    // Pass 3: D = sum_j p_j dp_j, dp_j = dout_i . v_j, in j order.
    double big_d = 0.0;
    for (int64_t j0 = 0; j0 <= i; j0 += 32) {
      const int64_t j = j0 + lane;
      double term = 0.0;
      if (j <= i) {
        const float p = __fdiv_rn(expf(__fsub_rn(score(j), mx)), denom);
        term = __dmul_rn(static_cast<double>(p), static_cast<double>(dot_in_order(do_row, v_base + j * sh.kv_stride, hd)));
      }
      const int n = i - j0 + 1 < 32 ? static_cast<int>(i - j0 + 1) : 32;
      for (int jj = 0; jj < n; ++jj) big_d = __dadd_rn(big_d, __shfl_sync(kFullMask, term, jj));
    }
    if (lane == 0) stats[row] = AttentionRowStats{big_d, mx, denom};
    // Pass 4: dq_i = sum_j ds_j k_j with ds_j = p_j (dp_j - D) scale, in
    // double, in j order; lane l accumulates dims l, l+32, ...
    double acc[kDimsPerLane];
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) acc[t] = 0.0;
    for (int64_t j0 = 0; j0 <= i; j0 += 32) {
      const int64_t j = j0 + lane;
      double ds = 0.0;
      if (j <= i) {
        const float p = __fdiv_rn(expf(__fsub_rn(score(j), mx)), denom);
        const float dp = dot_in_order(do_row, v_base + j * sh.kv_stride, hd);
        ds = __dmul_rn(__dmul_rn(static_cast<double>(p), __dsub_rn(static_cast<double>(dp), big_d)),
                       static_cast<double>(sh.scale));
      }
      const int n = i - j0 + 1 < 32 ? static_cast<int>(i - j0 + 1) : 32;
      for (int jj = 0; jj < n; ++jj) {
        const double ds_j = __shfl_sync(kFullMask, ds, jj);
        const float* k_row = k_base + (j0 + jj) * sh.kv_stride;
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) {
          const int d = lane + 32 * t;
          if (d < hd) acc[t] = __dadd_rn(acc[t], __dmul_rn(ds_j, static_cast<double>(k_row[d])));
        }
      }
    }
    float* dq_row = dq + (s * sh.seqlen + i) * sh.q_stride + h * hd;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < hd) dq_row[d] = static_cast<float>(acc[t]);
    }
  }
}

// Shared memory of the keys kernel: the tile's K and V rows [kBackwardKeyTile,
// hd] each, then the current query row and its dout row [hd] each.
inline size_t attention_backward_keys_smem_bytes(int64_t hd) {
  return static_cast<size_t>(2 * kBackwardKeyTile * hd + 2 * hd) * sizeof(float);
}

// The keys kernel: thread d accumulates dims d of the tile's dk and dv rows
// (registers); threads 0..15 rebuild key j0 + thread's p_ij and ds_ij per row.
__global__ void __launch_bounds__(kBackwardKeyThreads)
    attention_backward_keys_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                   const float* __restrict__ v, const float* __restrict__ dout,
                                   const AttentionRowStats* __restrict__ stats, float* __restrict__ dk,
                                   float* __restrict__ dv, int64_t ntiles, BackwardShape sh) {
  STREAMQ_DYNAMIC_SHARED(float, smem);
  STREAMQ_SHARED(float[kBackwardKeyTile], p_s);
  STREAMQ_SHARED(double[kBackwardKeyTile], ds_s);
  const int hd = sh.hd;
  float* k_s = smem;
  float* v_s = k_s + kBackwardKeyTile * hd;
  float* q_s = v_s + kBackwardKeyTile * hd;
  float* do_s = q_s + hd;

  const int64_t nkv = sh.nkv;
  // Heaviest tiles (the first keys are seen by the most rows) first.
  const int64_t tile = blockIdx.x % ntiles;
  const int64_t kvh = (blockIdx.x / ntiles) % nkv;
  const int64_t s = blockIdx.x / (ntiles * nkv);
  const int64_t j0 = tile * kBackwardKeyTile;
  const int64_t j_end = sh.seqlen < j0 + kBackwardKeyTile ? sh.seqlen : j0 + kBackwardKeyTile;
  const int tid = threadIdx.x;
  const float* k_base = k + s * sh.seqlen * sh.kv_stride + kvh * hd;
  const float* v_base = v + s * sh.seqlen * sh.kv_stride + kvh * hd;

  // Keys past the sequence end are zero and never used.
  for (int idx = tid; idx < kBackwardKeyTile * hd; idx += blockDim.x) {
    const int jj = idx / hd, d = idx % hd;
    k_s[idx] = j0 + jj < j_end ? k_base[(j0 + jj) * sh.kv_stride + d] : 0.0f;
    v_s[idx] = j0 + jj < j_end ? v_base[(j0 + jj) * sh.kv_stride + d] : 0.0f;
  }
  double dk_acc[kBackwardKeyTile], dv_acc[kBackwardKeyTile];
#pragma unroll
  for (int jj = 0; jj < kBackwardKeyTile; ++jj) dk_acc[jj] = dv_acc[jj] = 0.0;

  // The CPU's order for key j: query heads of the group in order, then rows i >= j.
  for (int64_t h = kvh * sh.group; h < (kvh + 1) * sh.group; ++h) {
    for (int64_t i = j0; i < sh.seqlen; ++i) {
      const int64_t qrow = (s * sh.seqlen + i) * sh.q_stride + h * hd;
      __syncthreads();  // the previous row's readers are done (first pass: the K and V tiles are stored)
      for (int d = tid; d < hd; d += blockDim.x) {
        q_s[d] = q[qrow + d];
        do_s[d] = dout[qrow + d];
      }
      __syncthreads();
      // Keys of the tile that row i sees: j0 .. min(i, j_end - 1).
      const int nvisible = i - j0 + 1 < j_end - j0 ? static_cast<int>(i - j0 + 1) : static_cast<int>(j_end - j0);
      if (tid < nvisible) {
        const AttentionRowStats st = stats[(s * sh.nheads + h) * sh.seqlen + i];
        const float sc = __fmul_rn(dot_in_order(q_s, k_s + tid * hd, hd), sh.scale);
        const float p = __fdiv_rn(expf(__fsub_rn(sc, st.max)), st.denom);
        const float dp = dot_in_order(do_s, v_s + tid * hd, hd);
        p_s[tid] = p;
        ds_s[tid] = __dmul_rn(__dmul_rn(static_cast<double>(p), __dsub_rn(static_cast<double>(dp), st.big_d)),
                              static_cast<double>(sh.scale));
      }
      __syncthreads();
      if (tid < hd) {
        const double qd = q_s[tid], dod = do_s[tid];
#pragma unroll
        for (int jj = 0; jj < kBackwardKeyTile; ++jj) {
          if (jj < nvisible) {
            dk_acc[jj] = __dadd_rn(dk_acc[jj], __dmul_rn(ds_s[jj], qd));
            dv_acc[jj] = __dadd_rn(dv_acc[jj], __dmul_rn(static_cast<double>(p_s[jj]), dod));
          }
        }
      }
    }
  }
  if (tid < hd) {
#pragma unroll
    for (int jj = 0; jj < kBackwardKeyTile; ++jj) {
      if (j0 + jj < j_end) {
        dk[(s * sh.seqlen + j0 + jj) * sh.kv_stride + kvh * hd + tid] = static_cast<float>(dk_acc[jj]);
        dv[(s * sh.seqlen + j0 + jj) * sh.kv_stride + kvh * hd + tid] = static_cast<float>(dv_acc[jj]);
      }
    }
  }
}

std::string attention_shapes(const char* op, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                             int64_t head_dim) {
  return std::string(op) + "(nseq=" + std::to_string(nseq) + ", seqlen=" + std::to_string(seqlen) +
         ", nheads=" + std::to_string(nheads) + ", nkv=" + std::to_string(nkv) +
         ", head_dim=" + std::to_string(head_dim) + ")";
}

// The CPU's argument check, then the kernels' head_dim limit.
void check_attention_args(const char* op, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                          int64_t head_dim) {
  if (nseq < 0 || seqlen < 0 || nheads < 0 || nkv <= 0 || head_dim < 0 || nheads % nkv != 0) {
    throw InternalError(attention_shapes(op, nseq, seqlen, nheads, nkv, head_dim) +
                        ": sizes must be non-negative and nheads a multiple of nkv");
  }
  if (head_dim > kCudaAttentionMaxHeadDim) {
    throw InternalError(attention_shapes(op, nseq, seqlen, nheads, nkv, head_dim) +
                        ": the CUDA kernel takes head_dim up to " + std::to_string(kCudaAttentionMaxHeadDim));
  }
}

}  // namespace

void cuda_attention(cudaStream_t stream, const float* q, const float* k, const float* v,
                    float* out, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                    int64_t head_dim) {
  const auto shapes = [&] { return attention_shapes("attention", nseq, seqlen, nheads, nkv, head_dim); };
  check_attention_args("attention", nseq, seqlen, nheads, nkv, head_dim);
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

size_t cuda_attention_backward_workspace_bytes(int64_t nseq, int64_t seqlen, int64_t nheads) {
  return static_cast<size_t>(nseq * nheads * seqlen) * sizeof(AttentionRowStats);
}

void cuda_attention_backward(cudaStream_t stream, const float* q, const float* k, const float* v,
                             const float* dout, float* dq, float* dk, float* dv, void* workspace, int64_t nseq,
                             int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) {
  const auto shapes = [&] {
    return attention_shapes("attention_backward", nseq, seqlen, nheads, nkv, head_dim);
  };
  check_attention_args("attention_backward", nseq, seqlen, nheads, nkv, head_dim);
  // The CPU's early return: no heads still means dk = dv = 0 (below).
  if (nseq == 0 || seqlen == 0 || head_dim == 0) return;
  if (workspace == nullptr && nheads > 0) throw InternalError(shapes() + ": no workspace for the row statistics");
  const BackwardShape sh{seqlen,
                         nheads,
                         nkv,
                         nheads / nkv,
                         nheads * head_dim,
                         nkv * head_dim,
                         static_cast<int>(head_dim),
                         static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)))};
  auto* stats = static_cast<AttentionRowStats*>(workspace);
  const int64_t rows = nseq * nheads * seqlen;
  if (rows > 0) {
    const int64_t need = (rows + kBackwardRowWarps - 1) / kBackwardRowWarps;
    const unsigned blocks = static_cast<unsigned>(need < kMaxBackwardRowBlocks ? need : kMaxBackwardRowBlocks);
    STREAMQ_LAUNCH(attention_backward_rows_kernel, blocks, kBackwardRowWarps * 32, 0, stream)(
        q, k, v, dout, dq, stats, rows, sh);
    CUDA_CHECK_LAUNCH("attention_backward_rows_kernel in " + shapes());
  }
  const int64_t ntiles = (seqlen + kBackwardKeyTile - 1) / kBackwardKeyTile;
  const int64_t blocks = nseq * nkv * ntiles;
  if (blocks > INT32_MAX) throw InternalError(shapes() + ": too many key tiles for one grid");
  STREAMQ_LAUNCH(attention_backward_keys_kernel, static_cast<unsigned>(blocks), kBackwardKeyThreads,
                 attention_backward_keys_smem_bytes(head_dim), stream)(q, k, v, dout, stats, dk, dv, ntiles, sh);
  CUDA_CHECK_LAUNCH("attention_backward_keys_kernel in " + shapes());
}

}  // namespace streamq
