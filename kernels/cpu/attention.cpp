// Causal grouped-query attention on the CPU. Work is split into tasks of
// (sequence, query head, tile of query rows); each task computes its tile's
// scores against keys 0..last row only, a row softmax, and P V, then writes
// its own output rows. Every output element is produced by exactly one task
// in a fixed order, so the result does not depend on the thread count.
// The backward (attention_backward, at the end) runs one task per (sequence,
// kv head), so the key and value gradients summed over a group of query
// heads have one writer each.
#include <tbb/blocked_range.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace streamq::cpu {
namespace {

// Query rows per task: bounds a worker's scratch to kTileRows x seqlen scores
// (1 MB at seqlen 4096) while giving enough tasks for short sequences.
constexpr int64_t kTileRows = 64;
// Keys per block: the block of K (transposed) and of V, packed, stays
// in L1/L2 while every row of the tile uses it.
constexpr int64_t kKeyBlock = 64;
// Register-blocking width: kLanes running sums live in registers across the
// reduction loop, and the loop over lanes vectorizes without reassociating.
constexpr int64_t kLanes = 16;
static_assert(kKeyBlock % kLanes == 0);
// Row stride of the packed K^T and V blocks: one cache line more than a
// multiple of 64 bytes, so consecutive rows fall in different L1 sets (K and V
// rows are often exactly 4 KB apart in the caller's layout, which makes every
// row of a block compete for the same 8 ways).
constexpr int64_t kKtStride = kKeyBlock + kLanes;
inline int64_t packed_v_stride(int64_t hd) { return (hd + kLanes - 1) / kLanes * kLanes + kLanes; }

// Float accumulation throughout: scores feed a softmax whose inputs HF
// computes in the activation dtype (bf16/fp32), and the error stays around
// sqrt(terms) * 2^-24 relative. Every sum runs over its index in a fixed
// order (d for scores, j for P V), so results are reproducible.

struct AttentionShape {
  int64_t nseq, seqlen, nheads, nkv, head_dim;
  int64_t group() const { return nheads / nkv; }
  int64_t q_stride() const { return nheads * head_dim; }
  int64_t kv_stride() const { return nkv * head_dim; }
};

// Four float lanes (one SSE register; GCC/Clang vector extension, so no ISA
// intrinsics). kLanes = 4 of these: the running sums stay in registers over
// the reduction loop, each lane summing its own terms in index order.
using f32x4 = float __attribute__((vector_size(16)));
inline f32x4 load4(const float* p) {
  f32x4 v;
  std::memcpy(&v, p, sizeof v);  // unaligned load
  return v;
}
inline void store4(float* p, f32x4 v) { std::memcpy(p, &v, sizeof v); }

// acc[l] += sum_{d < n} x[d] * y[d * y_stride + l] for l < kLanes, in d order.
inline void lanes_dot_add(const float* x, const float* y, int64_t y_stride, int64_t n,
                          float* acc) {
  f32x4 a0 = load4(acc), a1 = load4(acc + 4), a2 = load4(acc + 8), a3 = load4(acc + 12);
  for (int64_t d = 0; d < n; ++d) {
    const float xd = x[d];
    const float* yd = y + d * y_stride;
    a0 += xd * load4(yd);
    a1 += xd * load4(yd + 4);
    a2 += xd * load4(yd + 8);
    a3 += xd * load4(yd + 12);
  }
  store4(acc, a0);
  store4(acc + 4, a1);
  store4(acc + 8, a2);
  store4(acc + 12, a3);
}

// One task: query rows [t0, t1) of head h in sequence s.
void attention_tile(const float* q, const float* k, const float* v, float* out,
                    const AttentionShape& sh, int64_t s, int64_t h, int64_t t0, int64_t t1,
                    std::vector<float>& scratch) {
  const int64_t hd = sh.head_dim;
  const int64_t rows = t1 - t0;
  const int64_t nkeys = t1;  // causal: the tile's last row sees keys [0, t1)
  const int64_t kvh = h / sh.group();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));

  const int64_t v_ld = packed_v_stride(hd);
  const size_t need =
      static_cast<size_t>(rows * nkeys + hd * kKtStride + kKeyBlock * v_ld + rows * hd);
  if (scratch.size() < need) scratch.resize(need);
  float* probs = scratch.data();          // [rows, nkeys]; row i valid for keys <= t0 + i
  float* k_t = probs + rows * nkeys;      // [hd, kKtStride]: one key block, transposed
  float* v_pack = k_t + hd * kKtStride;   // [kKeyBlock, v_ld]: one value block
  float* acc = v_pack + kKeyBlock * v_ld; // [rows, hd]: P V running sums

  const float* q_base = q + (s * sh.seqlen) * sh.q_stride() + h * hd;
  const float* k_base = k + (s * sh.seqlen) * sh.kv_stride() + kvh * hd;
  const float* v_base = v + (s * sh.seqlen) * sh.kv_stride() + kvh * hd;

  // Scores, key block outermost so the block is reused by all rows of the tile.
  for (int64_t jb = 0; jb < nkeys; jb += kKeyBlock) {
    const int64_t nb = std::min(nkeys, jb + kKeyBlock) - jb;
    // Read each K row contiguously (walking a column would jump kv_stride
    // floats per element); the strided writes stay inside the small block.
    if (nb < kKeyBlock) std::fill(k_t, k_t + hd * kKtStride, 0.0f);  // unused lanes stay finite
    for (int64_t j = 0; j < nb; ++j) {
      const float* k_row = k_base + (jb + j) * sh.kv_stride();
      for (int64_t d = 0; d < hd; ++d) k_t[d * kKtStride + j] = k_row[d];
    }
    for (int64_t i = std::max<int64_t>(0, jb - t0); i < rows; ++i) {
      const int64_t n_valid = std::min(nb, t0 + i + 1 - jb);
      const float* q_row = q_base + (t0 + i) * sh.q_stride();
      float* p_row = probs + i * nkeys + jb;
      for (int64_t j0 = 0; j0 < n_valid; j0 += kLanes) {
        float dots[kLanes] = {};
        lanes_dot_add(q_row, k_t + j0, kKtStride, hd, dots);
        const int64_t w = std::min(kLanes, n_valid - j0);
        for (int64_t l = 0; l < w; ++l) p_row[j0 + l] = dots[l] * scale;
      }
    }
  }

  // Softmax per row with max subtraction; the normalizer is summed in double
  // because a row has up to seqlen terms.
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t n = t0 + i + 1;
    float* p_row = probs + i * nkeys;
    float mx = p_row[0];
    for (int64_t j = 1; j < n; ++j) mx = std::max(mx, p_row[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      p_row[j] = std::exp(p_row[j] - mx);
      sum += p_row[j];
    }
    const float denom = static_cast<float>(sum);
    for (int64_t j = 0; j < n; ++j) p_row[j] /= denom;
  }

  // acc = P V with key blocks outermost, so a block of V rows is reused by
  // every row of the tile. Each sum still runs over j in increasing order (the
  // float carried between blocks is the running sum), kLanes columns at a
  // time; a head_dim tail narrower than kLanes takes a scalar loop.
  std::fill(acc, acc + rows * hd, 0.0f);
  for (int64_t jb = 0; jb < nkeys; jb += kKeyBlock) {
    const int64_t nb = std::min(nkeys, jb + kKeyBlock) - jb;
    for (int64_t j = 0; j < nb; ++j) {
      std::copy_n(v_base + (jb + j) * sh.kv_stride(), hd, v_pack + j * v_ld);
    }
    for (int64_t i = std::max<int64_t>(0, jb - t0); i < rows; ++i) {
      const int64_t n_valid = std::min(nb, t0 + i + 1 - jb);
      const float* p_row = probs + i * nkeys + jb;
      float* a_row = acc + i * hd;
      int64_t d0 = 0;
      for (; d0 + kLanes <= hd; d0 += kLanes) {
        lanes_dot_add(p_row, v_pack + d0, v_ld, n_valid, a_row + d0);
      }
      for (; d0 < hd; ++d0) {
        float sum = a_row[d0];
        for (int64_t j = 0; j < n_valid; ++j) sum += p_row[j] * v_pack[j * v_ld + d0];
        a_row[d0] = sum;
      }
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    float* o_row = out + (s * sh.seqlen + t0 + i) * sh.q_stride() + h * hd;
    std::copy(acc + i * hd, acc + (i + 1) * hd, o_row);
  }
}

}  // namespace

void check_attention_args(int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) {
  if (nseq < 0 || seqlen < 0 || nheads < 0 || nkv <= 0 || head_dim < 0 ||
      nheads % nkv != 0) {
    throw InternalError("attention(nseq=" + std::to_string(nseq) +
                        ", seqlen=" + std::to_string(seqlen) +
                        ", nheads=" + std::to_string(nheads) + ", nkv=" + std::to_string(nkv) +
                        ", head_dim=" + std::to_string(head_dim) +
                        "): sizes must be non-negative and nheads a multiple of nkv");
  }
}

void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq,
               int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) {
  check_attention_args(nseq, seqlen, nheads, nkv, head_dim);
  if (nseq == 0 || seqlen == 0 || nheads == 0 || head_dim == 0) return;

  const AttentionShape sh{nseq, seqlen, nheads, nkv, head_dim};
  const int64_t ntiles = (seqlen + kTileRows - 1) / kTileRows;
  const int64_t ntasks = nseq * nheads * ntiles;
  tbb::enumerable_thread_specific<std::vector<float>> scratch;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, ntasks, 1),
                    [&](const tbb::blocked_range<int64_t>& r) {
    std::vector<float>& buf = scratch.local();
    for (int64_t task = r.begin(); task < r.end(); ++task) {
      const int64_t tile = task % ntiles;
      const int64_t h = (task / ntiles) % nheads;
      const int64_t s = task / (ntiles * nheads);
      const int64_t t0 = tile * kTileRows;
      attention_tile(q, k, v, out, sh, s, h, t0, std::min(seqlen, t0 + kTileRows), buf);
    }
  });
}

namespace {

// One backward task: sequence s, kv head kvh and the query heads that read
// it. Row by row (query i of head h): the forward's scores and softmax p_i
// recomputed, then with dp_ij = dout_i . v_j and D_i = sum_j p_ij dp_ij the
// softmax's backward ds_ij = p_ij (dp_ij - D_i), and
//   dq_i = scale sum_j ds_ij k_j,  dk_j += scale ds_ij q_i,  dv_j += p_ij dout_i.
// Only rows of scores live at a time (less than one head's matrix); dk and
// dv accumulate in double over the group's rows in a fixed order.
struct AttentionBackwardScratch {
  std::vector<float> p, dp;
  std::vector<double> dk, dv, dq;
};

void attention_backward_group(const float* q, const float* k, const float* v, const float* dout, float* dq,
                              float* dk, float* dv, const AttentionShape& sh, int64_t s, int64_t kvh,
                              AttentionBackwardScratch& sc) {
  const int64_t hd = sh.head_dim, n = sh.seqlen;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  sc.p.resize(static_cast<size_t>(n));
  sc.dp.resize(static_cast<size_t>(n));
  sc.dq.resize(static_cast<size_t>(hd));
  sc.dk.assign(static_cast<size_t>(n * hd), 0.0);
  sc.dv.assign(static_cast<size_t>(n * hd), 0.0);
  const int64_t row0 = s * n;
  const float* k_base = k + row0 * sh.kv_stride() + kvh * hd;
  const float* v_base = v + row0 * sh.kv_stride() + kvh * hd;
  for (int64_t h = kvh * sh.group(); h < (kvh + 1) * sh.group(); ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const float* q_row = q + (row0 + i) * sh.q_stride() + h * hd;
      const float* do_row = dout + (row0 + i) * sh.q_stride() + h * hd;
      float* p = sc.p.data();
      float* dp = sc.dp.data();
      float mx = -INFINITY;
      for (int64_t j = 0; j <= i; ++j) {
        const float* k_row = k_base + j * sh.kv_stride();
        float dot = 0.0f;
        for (int64_t d = 0; d < hd; ++d) dot += q_row[d] * k_row[d];
        p[j] = dot * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      const float denom = static_cast<float>(sum);
      double big_d = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        p[j] /= denom;
        const float* v_row = v_base + j * sh.kv_stride();
        float dot = 0.0f;
        for (int64_t d = 0; d < hd; ++d) dot += do_row[d] * v_row[d];
        dp[j] = dot;
        big_d += static_cast<double>(p[j]) * dot;
      }
      std::fill(sc.dq.begin(), sc.dq.end(), 0.0);
      for (int64_t j = 0; j <= i; ++j) {
        const double pj = p[j];
        const double ds = pj * (dp[j] - big_d) * scale;
        const float* k_row = k_base + j * sh.kv_stride();
        double* dk_row = sc.dk.data() + j * hd;
        double* dv_row = sc.dv.data() + j * hd;
        for (int64_t d = 0; d < hd; ++d) {
          sc.dq[d] += ds * k_row[d];
          dk_row[d] += ds * q_row[d];
          dv_row[d] += pj * do_row[d];
        }
      }
      float* dq_row = dq + (row0 + i) * sh.q_stride() + h * hd;
      for (int64_t d = 0; d < hd; ++d) dq_row[d] = static_cast<float>(sc.dq[d]);
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    float* dk_row = dk + (row0 + j) * sh.kv_stride() + kvh * hd;
    float* dv_row = dv + (row0 + j) * sh.kv_stride() + kvh * hd;
    for (int64_t d = 0; d < hd; ++d) {
      dk_row[d] = static_cast<float>(sc.dk[j * hd + d]);
      dv_row[d] = static_cast<float>(sc.dv[j * hd + d]);
    }
  }
}

}  // namespace

void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq, float* dk,
                        float* dv, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) {
  check_attention_args(nseq, seqlen, nheads, nkv, head_dim);
  if (nseq == 0 || seqlen == 0 || head_dim == 0) return;
  const AttentionShape sh{nseq, seqlen, nheads, nkv, head_dim};
  tbb::enumerable_thread_specific<AttentionBackwardScratch> scratch;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, nseq * nkv, 1), [&](const tbb::blocked_range<int64_t>& r) {
    AttentionBackwardScratch& sc = scratch.local();
    for (int64_t task = r.begin(); task < r.end(); ++task)
      attention_backward_group(q, k, v, dout, dq, dk, dv, sh, task / nkv, task % nkv, sc);
  });
}

}  // namespace streamq::cpu
