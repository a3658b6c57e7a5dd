// SDE's banded ops on the CPU (twins of kernels/cuda/sde_band.cu): U D with
// D = diag(S) + Map(P) banded, and the band's entries of dL/dD = M Vt^T.
// Each output element is computed by one task in a fixed order (this file
// is built without FMA contraction), so results are the CUDA twin's bits and
// do not depend on the thread count.
#include <algorithm>
#include <string>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel.h"

namespace streamq::cpu {

void check_sde_band_args(const char* op, int64_t rows, int64_t rank, int64_t band) {
  check_nonnegative(op, rows, rank);
  if (band < 0 || (rank > 0 && band > rank - 1))
    throw InternalError(std::string(op) + ": band " + std::to_string(band) + " outside 0.." +
                        std::to_string(rank - 1));
}

namespace {

#define STREAMQ_SDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// One row of U D: out[c] = u[c] (s[c] + p[c]), then for i = 1..band the
// D[c-i][c] term and the D[c+i][c] term, in that order: each element sees the
// CUDA twin's sequence of rounded float operations, while the loops run over
// c (contiguous lanes) inside each i. Built for AVX-512, AVX2 and the baseline
// from one body; without contraction every clone gives the same bits.
STREAMQ_SDE_CLONES void banded_row(const float* ua, const float* s, const float* params, int64_t rank, int64_t band,
                                   float* out) {
  for (int64_t c = 0; c < rank; ++c) out[c] = ua[c] * (s[c] + params[c]);
  for (int64_t i = 1; i <= band; ++i) {
    const float* above = params + (2 * i - 1) * rank;  // D[c-i][c] at above[c - i]
    const float* below = params + 2 * i * rank;        // D[c+i][c] at below[c]
    // D[c-i][c] exists for c >= i, D[c+i][c] for c < rank - i: c's range in
    // three parts, so each element gets its terms in order and nothing else
    // (where 2i > rank the middle part is empty and some c get neither).
    const int64_t lo = std::min(i, rank), hi = std::max(rank - i, int64_t{0});
    for (int64_t c = 0; c < std::min(lo, hi); ++c) out[c] += ua[c + i] * below[c];
    for (int64_t c = lo; c < hi; ++c) {
      out[c] += ua[c - i] * above[c - i];
      out[c] += ua[c + i] * below[c];
    }
    for (int64_t c = std::max(lo, hi); c < rank; ++c) out[c] += ua[c - i] * above[c - i];
  }
}

// Float products summed in float64 in four interleaved partial sums (k mod 4):
// the partial sums are the four lanes of one vector, each lane the CUDA
// twin's sequence of rounded adds (a float product is exact in float64).
STREAMQ_SDE_CLONES double band_dot(const float* a, const float* b, int64_t n) {
  using f64x4 = double __attribute__((vector_size(4 * sizeof(double))));
  f64x4 acc = {0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    const f64x4 x = {static_cast<double>(a[k]), static_cast<double>(a[k + 1]), static_cast<double>(a[k + 2]),
                     static_cast<double>(a[k + 3])};
    const f64x4 y = {static_cast<double>(b[k]), static_cast<double>(b[k + 1]), static_cast<double>(b[k + 2]),
                     static_cast<double>(b[k + 3])};
    acc += x * y;
  }
  for (; k < n; ++k) acc[0] += static_cast<double>(a[k]) * b[k];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

}  // namespace

void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                        int64_t band, float* ud) {
  check_sde_band_args("sde_banded_product", rows, rank, band);
  parallel_rows(rows, rank * (2 * band + 1), [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) banded_row(u + a * rank, s, params, rank, band, ud + a * rank);
  });
}

void sde_band_grad(const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band, float* dparams) {
  check_nonnegative("sde_band_grad", cols);
  check_sde_band_args("sde_band_grad", 0, rank, band);
  const int64_t slots = 2 * band + 1;
  parallel_rows(slots * rank, cols, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const int64_t slot = o / rank, j = o - slot * rank;
      const int64_t i = (slot + 1) / 2;  // slot 2i-1: D[j][j+i]; slot 2i: D[j+i][j]
      float v = 0.0f;
      if (slot == 0) v = static_cast<float>(band_dot(m + j * cols, vt + j * cols, cols));
      else if (j + i < rank)
        v = static_cast<float>(slot % 2 == 1 ? band_dot(m + j * cols, vt + (j + i) * cols, cols)
                                             : band_dot(m + (j + i) * cols, vt + j * cols, cols));
      dparams[o] = v;
    }
  });
}

}  // namespace streamq::cpu
