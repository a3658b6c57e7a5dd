// Causal grouped-query attention on the CPU. Work is split into tasks of
// (sequence, query head, tile of query rows); each task computes its tile's
// scores against keys 0..last row only, a row softmax, and P V, then writes
// its own output rows. Every output element is produced by exactly one task
// in a fixed order, so the result does not depend on the thread count.
#include <tbb/blocked_range.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace streamq::cpu {
namespace {

// Query rows per task: bounds a worker's scratch to kTileRows x seqlen scores
// (1 MB at seqlen 4096) while giving enough tasks for short sequences.
constexpr int64_t kTileRows = 64;
// Keys per inner block: a block of K or V rows (64 x head_dim floats) stays in
// L1/L2 while every row of the tile uses it.
constexpr int64_t kKeyBlock = 64;

// Dot product in float with 8 partial sums combined in a fixed tree. Float
// suffices: scores feed a softmax whose inputs HF computes in the activation
// dtype (bf16/fp32), and the error stays ~head_dim * 2^-24 relative. Fixed
// partials (not a compiler-chosen reassociation) keep it reproducible.
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) +
         tail;
}

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

  const size_t need = static_cast<size_t>(rows * nkeys + rows * hd);
  if (scratch.size() < need) scratch.resize(need);
  float* probs = scratch.data();          // [rows, nkeys]; row i valid for keys <= t0 + i
  float* acc = probs + rows * nkeys;      // [rows, hd]

  const float* q_base = q + (s * sh.seqlen) * sh.q_stride() + h * hd;
  const float* k_base = k + (s * sh.seqlen) * sh.kv_stride() + kvh * hd;
  const float* v_base = v + (s * sh.seqlen) * sh.kv_stride() + kvh * hd;

  // Scores, key block outermost so the block is reused by all rows of the tile.
  for (int64_t jb = 0; jb < nkeys; jb += kKeyBlock) {
    const int64_t je = std::min(nkeys, jb + kKeyBlock);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t j_end = std::min(je, t0 + i + 1);
      const float* q_row = q_base + (t0 + i) * sh.q_stride();
      float* p_row = probs + i * nkeys;
      for (int64_t j = jb; j < j_end; ++j) {
        p_row[j] = dot(q_row, k_base + j * sh.kv_stride(), hd) * scale;
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

  // acc = P V, accumulated in float in key order (fixed per row).
  std::fill(acc, acc + rows * hd, 0.0f);
  for (int64_t jb = 0; jb < nkeys; jb += kKeyBlock) {
    const int64_t je = std::min(nkeys, jb + kKeyBlock);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t j_end = std::min(je, t0 + i + 1);
      const float* p_row = probs + i * nkeys;
      float* a_row = acc + i * hd;
      for (int64_t j = jb; j < j_end; ++j) {
        const float p = p_row[j];
        const float* v_row = v_base + j * sh.kv_stride();
        for (int64_t d = 0; d < hd; ++d) a_row[d] += p * v_row[d];
      }
    }
  }

  for (int64_t i = 0; i < rows; ++i) {
    float* o_row = out + (s * sh.seqlen + t0 + i) * sh.q_stride() + h * hd;
    std::copy(acc + i * hd, acc + (i + 1) * hd, o_row);
  }
}

}  // namespace

void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq,
               int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) {
  if (nseq < 0 || seqlen < 0 || nheads < 0 || nkv <= 0 || head_dim < 0 ||
      nheads % nkv != 0) {
    throw InternalError("attention(nseq=" + std::to_string(nseq) +
                        ", seqlen=" + std::to_string(seqlen) +
                        ", nheads=" + std::to_string(nheads) + ", nkv=" + std::to_string(nkv) +
                        ", head_dim=" + std::to_string(head_dim) +
                        "): sizes must be non-negative and nheads a multiple of nkv");
  }
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

}  // namespace streamq::cpu
