// Causal grouped-query attention on the CPU. Work is split into tasks of
// (sequence, query head, tile of query rows); each task computes its tile's
// scores against keys 0..last row only (one GEMM), a row softmax, and P V
// (a second GEMM) into its own output rows. Every output element is produced
// by exactly one task in a fixed order, so the result does not depend on the
// thread count.
// The backward (attention_backward, at the end) runs in two passes, query
// rows then keys, as the CUDA twin: each gradient element has one writer.
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

// The backward: two passes, as the CUDA twin's two kernels.
//  rows: one task per (sequence, query head, tile of query rows). Row i's
//    scores and softmax p_i recomputed; dp_ij = dout_i . v_j; D_i = sum_j
//    p_ij dp_ij; ds_ij = p_ij (dp_ij - D_i) scale; dq_i = sum_j ds_ij k_j;
//    and the row's (max, denominator, D_i) kept for the keys pass.
//  keys: one task per (sequence, kv head, tile of keys). For key j, over the
//    group's query heads and then rows i >= j: p_ij and ds_ij rebuilt from
//    the row's kept numbers, dk_j += ds_ij q_i, dv_j += p_ij dout_i.
// Each output element has one writer. Every element sees the sequence of
// rounded operations of the one-row-at-a-time loop
// (tests/support/attention_backward_scalar.h; test_backward_ops.cpp holds
// every backend to its bits, and the CUDA twin's test to this op's): dot products in float in d order, the
// softmax's sum and D in double in j order, dq, dk and dv in double in their
// loop's order. The dot products run with keys as the vector lanes (each
// lane summing its own d order) over transposed K and V; this file is built
// without FMA contraction, so the AVX-512, AVX2 and baseline clones give the
// same bits.

#define STREAMQ_ATTN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// Query rows per rows-pass task and keys per keys-pass task: enough tasks for
// one sequence's few kv heads (SmolLM2: 3) on every core, and a keys task's
// float64 dk and dv accumulators (2 x 32 x head_dim) stay in L1/L2.
constexpr int64_t kBackwardRowTile = 32;
constexpr int64_t kBackwardKeyTile = 32;

struct AttentionRowStats {
  double big_d;
  float max, denom;
};

// Lanes a dot-product block keeps in registers across the d loop (two
// AVX-512 or four AVX2 vectors): summing into memory instead makes every d
// a store and reload of the same vector, which bounds the loop.
constexpr int64_t kDotLanes = 32;

// dots[j] = sum_{d < hd} a[d] * bt[d * ld + j] for j in [0, m), m <= kDotLanes.
// kFull (m == kDotLanes) gives the inner loop a constant trip count, which
// is what keeps acc in registers.
template <bool kFull>
[[gnu::always_inline]] inline void dot_block(const float* a, const float* bt, int64_t ld, int64_t hd, int64_t m,
                                             float* dots) {
  const int64_t lanes = kFull ? kDotLanes : m;
  float acc[kDotLanes] = {};
  for (int64_t d = 0; d < hd; ++d) {
    const float ad = a[d];
    const float* row = bt + d * ld;
    for (int64_t j = 0; j < lanes; ++j) acc[j] += ad * row[j];
  }
  for (int64_t j = 0; j < lanes; ++j) dots[j] = acc[j];
}

// dots[j] = sum_{d < hd} a[d] * bt[d * ld + j] for j in [0, n): lane j sums
// in d order from 0.0f, one rounded multiply and one rounded add a term.
STREAMQ_ATTN_CLONES void dots_by_column(const float* a, const float* bt, int64_t ld, int64_t hd, int64_t n,
                                       float* dots) {
  int64_t j0 = 0;
  for (; j0 + kDotLanes <= n; j0 += kDotLanes) dot_block<true>(a, bt + j0, ld, hd, kDotLanes, dots + j0);
  if (j0 < n) dot_block<false>(a, bt + j0, ld, hd, n - j0, dots + j0);
}

// acc[d] += coef[j] * double(rows[j * ld + d]) for j in [0, n) in order, d < hd.
// Blocks of 16 dims stay in two 8-double vectors across the j loop (written
// with vector types: GCC keeps a plain 16-double array in scalar registers).
STREAMQ_ATTN_CLONES void accumulate_rows(const double* coef, const float* rows, int64_t ld, int64_t n, int64_t hd,
                                         double* acc) {
  using f64x8 = double __attribute__((vector_size(8 * sizeof(double))));
  using f32x8 = float __attribute__((vector_size(8 * sizeof(float))));
  int64_t d0 = 0;
  for (; d0 + 16 <= hd; d0 += 16) {
    f64x8 lo, hi;
    std::memcpy(&lo, acc + d0, sizeof lo);
    std::memcpy(&hi, acc + d0 + 8, sizeof hi);
    for (int64_t j = 0; j < n; ++j) {
      f32x8 a, b;
      std::memcpy(&a, rows + j * ld + d0, sizeof a);
      std::memcpy(&b, rows + j * ld + d0 + 8, sizeof b);
      lo += coef[j] * __builtin_convertvector(a, f64x8);
      hi += coef[j] * __builtin_convertvector(b, f64x8);
    }
    std::memcpy(acc + d0, &lo, sizeof lo);
    std::memcpy(acc + d0 + 8, &hi, sizeof hi);
  }
  for (int64_t j = 0; j < n && d0 < hd; ++j) {
    const float* row = rows + j * ld;
    for (int64_t d = d0; d < hd; ++d) acc[d] += coef[j] * static_cast<double>(row[d]);
  }
}

// Two rank-one updates of [n, hd] accumulators: a[j * hd + d] += ca[j] *
// x[d] and b[j * hd + d] += cb[j] * y[d] (x and y: float rows widened once).
STREAMQ_ATTN_CLONES void accumulate_outer(const double* ca, const double* x, double* a, const double* cb,
                                          const double* y, double* b, int64_t n, int64_t hd) {
  for (int64_t j = 0; j < n; ++j) {
    double* ar = a + j * hd;
    double* br = b + j * hd;
    const double cj = ca[j], dj = cb[j];
    for (int64_t d = 0; d < hd; ++d) {
      ar[d] += cj * x[d];
      br[d] += dj * y[d];
    }
  }
}

// src's [n, hd] rows (stride ld) as [hd, n]: dst[d * n + j] = src[j * ld + d].
void transpose_rows(const float* src, int64_t ld, int64_t n, int64_t hd, float* dst) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) dst[d * n + j] = src[j * ld + d];
}

// The backward's shared inputs: K and V of each (sequence, kv head)
// transposed to [hd, seqlen], and each query row's softmax numbers.
struct AttentionBackwardState {
  const AttentionShape& sh;
  const float *q, *k, *v, *dout;
  std::vector<float> kt, vt;           // [nseq, nkv, hd, seqlen]
  std::vector<AttentionRowStats> rows;  // [nseq, nheads, seqlen]
  float scale;
  const float* kt_of(int64_t s, int64_t kvh) const {
    return kt.data() + (s * sh.nkv + kvh) * sh.head_dim * sh.seqlen;
  }
  const float* vt_of(int64_t s, int64_t kvh) const {
    return vt.data() + (s * sh.nkv + kvh) * sh.head_dim * sh.seqlen;
  }
};

struct BackwardRowScratch {
  std::vector<float> p, dp;
  std::vector<double> ds, dq;
};

// Rows [t0, t1) of head h in sequence s: dq and the rows' stats.
void attention_backward_rows(const AttentionBackwardState& st, float* dq, int64_t s, int64_t h, int64_t t0,
                             int64_t t1, AttentionRowStats* stats, BackwardRowScratch& sc) {
  const AttentionShape& sh = st.sh;
  const int64_t hd = sh.head_dim, n = sh.seqlen, kvh = h / sh.group();
  sc.p.resize(static_cast<size_t>(n));
  sc.dp.resize(static_cast<size_t>(n));
  sc.ds.resize(static_cast<size_t>(n));
  sc.dq.resize(static_cast<size_t>(hd));
  const float* kt = st.kt_of(s, kvh);
  const float* vt = st.vt_of(s, kvh);
  const float* k_base = st.k + s * n * sh.kv_stride() + kvh * hd;
  float* p = sc.p.data();
  float* dp = sc.dp.data();
  for (int64_t i = t0; i < t1; ++i) {
    const float* q_row = st.q + (s * n + i) * sh.q_stride() + h * hd;
    const float* do_row = st.dout + (s * n + i) * sh.q_stride() + h * hd;
    const int64_t nk = i + 1;
    dots_by_column(q_row, kt, n, hd, nk, p);
    float mx = -INFINITY;
    for (int64_t j = 0; j < nk; ++j) {
      p[j] *= st.scale;
      mx = std::max(mx, p[j]);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < nk; ++j) {
      p[j] = std::exp(p[j] - mx);
      sum += p[j];
    }
    const float denom = static_cast<float>(sum);
    dots_by_column(do_row, vt, n, hd, nk, dp);
    double big_d = 0.0;
    for (int64_t j = 0; j < nk; ++j) {
      p[j] /= denom;
      big_d += static_cast<double>(p[j]) * dp[j];
    }
    stats[i] = AttentionRowStats{big_d, mx, denom};
    for (int64_t j = 0; j < nk; ++j) sc.ds[j] = static_cast<double>(p[j]) * (dp[j] - big_d) * st.scale;
    std::fill(sc.dq.begin(), sc.dq.end(), 0.0);
    accumulate_rows(sc.ds.data(), k_base, sh.kv_stride(), nk, hd, sc.dq.data());
    float* dq_row = dq + (s * n + i) * sh.q_stride() + h * hd;
    for (int64_t d = 0; d < hd; ++d) dq_row[d] = static_cast<float>(sc.dq[d]);
  }
}

struct BackwardKeyScratch {
  std::vector<float> kt, vt, p, dp;  // the tile's K and V as [hd, tile]; a row's scores and dp over the tile
  std::vector<double> ds, pd;        // a row's ds and p (as double) over the tile
  std::vector<double> qd, dod;       // the row's q and dout, widened
  std::vector<double> dk, dv;        // [tile, hd]
};

// Keys [j0, j1) of kv head kvh in sequence s: dk and dv.
void attention_backward_keys(const AttentionBackwardState& st, float* dk, float* dv, int64_t s, int64_t kvh,
                             int64_t j0, int64_t j1, BackwardKeyScratch& sc) {
  const AttentionShape& sh = st.sh;
  const int64_t hd = sh.head_dim, n = sh.seqlen, nt = j1 - j0;
  sc.kt.resize(static_cast<size_t>(hd * nt));
  sc.vt.resize(static_cast<size_t>(hd * nt));
  sc.p.resize(static_cast<size_t>(nt));
  sc.dp.resize(static_cast<size_t>(nt));
  sc.ds.resize(static_cast<size_t>(nt));
  sc.pd.resize(static_cast<size_t>(nt));
  sc.qd.resize(static_cast<size_t>(hd));
  sc.dod.resize(static_cast<size_t>(hd));
  sc.dk.assign(static_cast<size_t>(nt * hd), 0.0);
  sc.dv.assign(static_cast<size_t>(nt * hd), 0.0);
  const float* kt = st.kt_of(s, kvh);
  const float* vt = st.vt_of(s, kvh);
  // The tile's columns, contiguous: reading K^T and V^T in place (row
  // stride seqlen) measured slower on 2 threads (36 ms against 31 at
  // SmolLM2's shape, bench_attention_backward), same bits.
  for (int64_t d = 0; d < hd; ++d) {
    std::copy(kt + d * n + j0, kt + d * n + j1, sc.kt.begin() + d * nt);
    std::copy(vt + d * n + j0, vt + d * n + j1, sc.vt.begin() + d * nt);
  }
  float* p = sc.p.data();
  float* dp = sc.dp.data();
  for (int64_t h = kvh * sh.group(); h < (kvh + 1) * sh.group(); ++h) {
    const AttentionRowStats* stats = st.rows.data() + (s * sh.nheads + h) * n;
    for (int64_t i = j0; i < n; ++i) {
      const float* q_row = st.q + (s * n + i) * sh.q_stride() + h * hd;
      const float* do_row = st.dout + (s * n + i) * sh.q_stride() + h * hd;
      const int64_t visible = std::min(i + 1, j1) - j0;  // keys j0 .. min(i, j1 - 1)
      const AttentionRowStats& rs = stats[i];
      dots_by_column(q_row, sc.kt.data(), nt, hd, visible, p);
      dots_by_column(do_row, sc.vt.data(), nt, hd, visible, dp);
      for (int64_t jj = 0; jj < visible; ++jj) {
        const float pj = std::exp(p[jj] * st.scale - rs.max) / rs.denom;
        sc.pd[jj] = pj;
        sc.ds[jj] = static_cast<double>(pj) * (dp[jj] - rs.big_d) * st.scale;
      }
      std::copy(q_row, q_row + hd, sc.qd.begin());
      std::copy(do_row, do_row + hd, sc.dod.begin());
      accumulate_outer(sc.ds.data(), sc.qd.data(), sc.dk.data(), sc.pd.data(), sc.dod.data(), sc.dv.data(), visible,
                       hd);
    }
  }
  for (int64_t jj = 0; jj < nt; ++jj) {
    float* dk_row = dk + (s * n + j0 + jj) * sh.kv_stride() + kvh * hd;
    float* dv_row = dv + (s * n + j0 + jj) * sh.kv_stride() + kvh * hd;
    for (int64_t d = 0; d < hd; ++d) {
      dk_row[d] = static_cast<float>(sc.dk[jj * hd + d]);
      dv_row[d] = static_cast<float>(sc.dv[jj * hd + d]);
    }
  }
}

}  // namespace

void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq, float* dk,
                        float* dv, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) {
  check_attention_args(nseq, seqlen, nheads, nkv, head_dim);
  if (nseq == 0 || seqlen == 0 || head_dim == 0) return;
  const AttentionShape sh{nseq, seqlen, nheads, nkv, head_dim};
  const int64_t n = seqlen, hd = head_dim;
  AttentionBackwardState st{sh, q, k, v, dout, {}, {}, {}, static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
  st.kt.resize(static_cast<size_t>(nseq * nkv * hd * n));
  st.vt.resize(st.kt.size());
  st.rows.resize(static_cast<size_t>(nseq * nheads * n));
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, nseq * nkv, 1), [&](const tbb::blocked_range<int64_t>& r) {
    for (int64_t task = r.begin(); task < r.end(); ++task) {
      const int64_t s = task / nkv, kvh = task % nkv;
      const int64_t off = s * n * sh.kv_stride() + kvh * hd;
      transpose_rows(k + off, sh.kv_stride(), n, hd, st.kt.data() + task * hd * n);
      transpose_rows(v + off, sh.kv_stride(), n, hd, st.vt.data() + task * hd * n);
    }
  });
  // Longest rows (last tiles) first in each pass, so the short tasks fill in at the end.
  const int64_t row_tiles = (n + kBackwardRowTile - 1) / kBackwardRowTile;
  tbb::enumerable_thread_specific<BackwardRowScratch> row_scratch;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, nseq * nheads * row_tiles, 1),
                    [&](const tbb::blocked_range<int64_t>& r) {
    BackwardRowScratch& sc = row_scratch.local();
    for (int64_t task = r.begin(); task < r.end(); ++task) {
      const int64_t tile = row_tiles - 1 - task % row_tiles, h = (task / row_tiles) % nheads;
      const int64_t s = task / (row_tiles * nheads), t0 = tile * kBackwardRowTile;
      attention_backward_rows(st, dq, s, h, t0, std::min(n, t0 + kBackwardRowTile),
                              st.rows.data() + (s * nheads + h) * n, sc);
    }
  });
  const int64_t key_tiles = (n + kBackwardKeyTile - 1) / kBackwardKeyTile;
  tbb::enumerable_thread_specific<BackwardKeyScratch> key_scratch;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, nseq * nkv * key_tiles, 1),
                    [&](const tbb::blocked_range<int64_t>& r) {
    BackwardKeyScratch& sc = key_scratch.local();
    for (int64_t task = r.begin(); task < r.end(); ++task) {
      const int64_t tile = task % key_tiles, kvh = (task / key_tiles) % nkv, s = task / (key_tiles * nkv);
      const int64_t j0 = tile * kBackwardKeyTile;  // the first keys are seen by the most rows
      attention_backward_keys(st, dk, dv, s, kvh, j0, std::min(n, j0 + kBackwardKeyTile), sc);
    }
  });
}

}  // namespace streamq::cpu
