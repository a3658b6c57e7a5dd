// SDE's banded ops on the CPU (twins of kernels/cuda/sde_band.cu): U D with
// D = diag(S) + Map(P) banded, and the band's entries of dL/dD = M Vt^T.
// Each output element is computed by one task in a fixed order (this file
// is built without FMA contraction), so results are the CUDA twin's bits and
// do not depend on the thread count.
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

void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                        int64_t band, float* ud) {
  check_sde_band_args("sde_banded_product", rows, rank, band);
  parallel_rows(rows, rank * (2 * band + 1), [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) {
      const float* ua = u + a * rank;
      float* out = ud + a * rank;
      for (int64_t c = 0; c < rank; ++c) {
        float acc = ua[c] * (s[c] + params[c]);
        for (int64_t i = 1; i <= band; ++i) {
          if (c >= i) acc += ua[c - i] * params[(2 * i - 1) * rank + (c - i)];  // D[c-i][c]
          if (c + i < rank) acc += ua[c + i] * params[2 * i * rank + c];       // D[c+i][c]
        }
        out[c] = acc;
      }
    }
  });
}

namespace {
// Float products summed in float64 in four interleaved partial sums (k mod 4).
double band_dot(const float* a, const float* b, int64_t n) {
  double acc[4] = {0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4)
    for (int l = 0; l < 4; ++l) acc[l] += static_cast<double>(a[k + l]) * b[k + l];
  for (; k < n; ++k) acc[0] += static_cast<double>(a[k]) * b[k];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}
}  // namespace

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
