// Causal grouped-query attention on the CPU. Work is split into tasks of
// (sequence, query head, tile of query rows); each task computes its tile's
// scores against keys 0..last row only (one GEMM), a row softmax, and P V
// (a second GEMM) into its own output rows. Every output element is produced
// by exactly one task in a fixed order, so the result does not depend on the
// thread count.
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
#include "kernels/cpu/vec_exp.h"

namespace streamq::cpu {
namespace {

// Query rows per task: bounds a worker's scratch to kTileRows x seqlen scores
// (1 MB at seqlen 4096) while giving enough tasks for short sequences.
constexpr int64_t kTileRows = 64;

// Float accumulation throughout: scores feed a softmax whose inputs HF
// computes in the activation dtype (bf16/fp32), and the error stays around
// sqrt(terms) * 2^-24 relative. The two products of a tile are single-tile
// GEMMs (cpu::gemm: one BLAS call of a fixed shape, so the same rounding for
// any thread count); they replaced hand-vectorized SSE loops that were a
// fifth of `streamq eval`'s time (issue 16). The float64 naive reference in
// tests/support/attention_reference.h is the slow twin the op table checks
// this against.

struct AttentionShape {
  int64_t nseq, seqlen, nheads, nkv, head_dim;
  int64_t group() const { return nheads / nkv; }
  int64_t q_stride() const { return nheads * head_dim; }
  int64_t kv_stride() const { return nkv * head_dim; }
};

// One task: query rows [t0, t1) of head h in sequence s.
void attention_tile(const float* q, const float* k, const float* v, float* out,
                    const AttentionShape& sh, int64_t s, int64_t h, int64_t t0, int64_t t1,
                    std::vector<float>& scratch) {
  const int64_t hd = sh.head_dim;
  const int64_t rows = t1 - t0;
  const int64_t nkeys = t1;  // causal: the tile's last row sees keys [0, t1)
  const int64_t kvh = h / sh.group();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));

  const size_t need = static_cast<size_t>(rows * nkeys);
  if (scratch.size() < need) scratch.resize(need);
  float* probs = scratch.data();  // [rows, nkeys]

  const float* q_tile = q + (s * sh.seqlen + t0) * sh.q_stride() + h * hd;
  const float* k_base = k + (s * sh.seqlen) * sh.kv_stride() + kvh * hd;
  const float* v_base = v + (s * sh.seqlen) * sh.kv_stride() + kvh * hd;
  float* out_tile = out + (s * sh.seqlen + t0) * sh.q_stride() + h * hd;

  // Scores of every row against keys [0, t1): the few above the diagonal
  // (at most kTileRows^2 / 2 of them) are computed and then masked.
  gemm(Trans::N, Trans::T, rows, nkeys, hd, scale, q_tile, sh.q_stride(), k_base, sh.kv_stride(), 0.0f, probs,
       nkeys);

  // Softmax per row with max subtraction; the normalizer is summed in double
  // because a row has up to seqlen terms. Keys after the row's own are zero
  // probability, so P V below may run over all nkeys.
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t n = t0 + i + 1;
    float* p_row = probs + i * nkeys;
    const float mx = max_of(p_row, n);
    const float denom = static_cast<float>(exp_shifted_sum(p_row, mx, n, p_row));
    for (int64_t j = 0; j < n; ++j) p_row[j] /= denom;
    std::fill(p_row + n, p_row + nkeys, 0.0f);
  }

  // out = P V. The zero probabilities above the diagonal multiply values of
  // later tokens: exactly nothing when those are finite (0 v adds +-0), so
  // one GEMM over all keys. A non-finite later value (0 inf = NaN) must not
  // reach earlier rows: then the keys before the tile go through the GEMM
  // and the tile's own keys row by row, each row only up to itself.
  bool diagonal_finite = true;
  for (int64_t j = t0; j < t1 && diagonal_finite; ++j) {
    const float* v_row = v_base + j * sh.kv_stride();
    for (int64_t d = 0; d < hd; ++d) diagonal_finite = diagonal_finite && std::isfinite(v_row[d]);
  }
  if (diagonal_finite) {
    gemm(Trans::N, Trans::N, rows, hd, nkeys, 1.0f, probs, nkeys, v_base, sh.kv_stride(), 0.0f, out_tile,
         sh.q_stride());
    return;
  }
  if (t0 > 0) {
    gemm(Trans::N, Trans::N, rows, hd, t0, 1.0f, probs, nkeys, v_base, sh.kv_stride(), 0.0f, out_tile,
         sh.q_stride());
  } else {
    for (int64_t i = 0; i < rows; ++i) std::fill(out_tile + i * sh.q_stride(), out_tile + i * sh.q_stride() + hd, 0.0f);
  }
  for (int64_t i = 0; i < rows; ++i) {
    float* o_row = out_tile + i * sh.q_stride();
    const float* p_row = probs + i * nkeys;
    for (int64_t j = t0; j <= t0 + i; ++j) {
      const float* v_row = v_base + j * sh.kv_stride();
      for (int64_t d = 0; d < hd; ++d) o_row[d] += p_row[j] * v_row[d];
    }
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
