// The normalized Hadamard transform of rows (Backend::hadamard_rows): signs,
// a Walsh-Hadamard butterfly over each 2^k segment, the dense +-1 H_m mix of
// the segments, the 1/sqrt(n) scale; each step's float operations in one
// fixed order, which the CUDA twin (kernels/cuda/hadamard.cu) repeats, so
// the two agree bit for bit. Rows in parallel on oneTBB.
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "src/core/error.h"

namespace streamq::cpu {
namespace {

// In-place unnormalized butterfly of p = 2^k floats (Sylvester order:
// H_p[i][j] = (-1)^popcount(i & j), symmetric).
void fwht(float* x, int64_t p) {
  for (int64_t len = 1; len < p; len <<= 1)
    for (int64_t i = 0; i < p; i += 2 * len)
      for (int64_t j = i; j < i + len; ++j) {
        const float u = x[j], v = x[j + len];
        x[j] = u + v;
        x[j + len] = u - v;
      }
}

void transform_row(float* x, int64_t n, const float* hm, int64_t m, const float* signs, bool inverse,
                   std::vector<float>& scratch) {
  const int64_t p = n / m;
  if (!inverse && signs)
    for (int64_t i = 0; i < n; ++i) x[i] *= signs[i];
  for (int64_t a = 0; a < m; ++a) fwht(x + a * p, p);
  if (m > 1) {
    // y[a][b] = sum_a' H_m[a][a'] x[a'][b] (inverse: H_m[a'][a]), a' ascending.
    scratch.assign(static_cast<size_t>(n), 0.0f);
    for (int64_t a = 0; a < m; ++a)
      for (int64_t a2 = 0; a2 < m; ++a2) {
        const float h = inverse ? hm[a2 * m + a] : hm[a * m + a2];
        float* y = scratch.data() + a * p;
        const float* xs = x + a2 * p;
        if (h > 0)
          for (int64_t b = 0; b < p; ++b) y[b] += xs[b];
        else
          for (int64_t b = 0; b < p; ++b) y[b] -= xs[b];
      }
    std::copy(scratch.begin(), scratch.end(), x);
  }
  const float scale = hadamard_scale(n);
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
  if (inverse && signs)
    for (int64_t i = 0; i < n; ++i) x[i] *= signs[i];
}

}  // namespace

float hadamard_scale(int64_t n) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n))); }

void check_hadamard_args(int64_t rows, int64_t n, int64_t m) {
  const std::string shape = "hadamard_rows(rows=" + std::to_string(rows) + ", n=" + std::to_string(n) +
                            ", m=" + std::to_string(m) + ")";
  if (rows < 0 || n < 1 || m < 1 || n % m != 0) throw InternalError(shape + ": needs rows >= 0 and m dividing n");
  const int64_t p = n / m;
  if ((p & (p - 1)) != 0) throw InternalError(shape + ": n / m must be a power of two");
}

namespace {

// Segments narrower than a vector (n / m < 8: a small model's H_m of the
// whole width) leave transform_row's mix a scalar loop of m^2 one-element
// adds; kTileRows rows are then mixed together, transposed so that the adds
// run across rows: per row the same operations in the same order (0 plus
// each +-x[a'] for a' ascending, exact sign flips), so the same bits.
constexpr int64_t kTileRows = 16;

void transform_tile(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs, bool inverse) {
  const int64_t p = n / m;
  thread_local std::vector<float> xt, yt;
  xt.assign(static_cast<size_t>(n * kTileRows), 0.0f);
  yt.assign(static_cast<size_t>(n * kTileRows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * n;
    if (!inverse && signs)
      for (int64_t i = 0; i < n; ++i) row[i] *= signs[i];
    for (int64_t a = 0; a < m; ++a) fwht(row + a * p, p);
    for (int64_t i = 0; i < n; ++i) xt[i * kTileRows + r] = row[i];
  }
  for (int64_t a = 0; a < m; ++a)
    for (int64_t a2 = 0; a2 < m; ++a2) {
      const float h = inverse ? hm[a2 * m + a] : hm[a * m + a2];
      for (int64_t b = 0; b < p; ++b) {
        float* y = yt.data() + (a * p + b) * kTileRows;
        const float* xs = xt.data() + (a2 * p + b) * kTileRows;
        if (h > 0)
          for (int64_t r = 0; r < kTileRows; ++r) y[r] += xs[r];
        else
          for (int64_t r = 0; r < kTileRows; ++r) y[r] -= xs[r];
      }
    }
  const float scale = hadamard_scale(n);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * n;
    for (int64_t i = 0; i < n; ++i) row[i] = yt[i * kTileRows + r] * scale;
    if (inverse && signs)
      for (int64_t i = 0; i < n; ++i) row[i] *= signs[i];
  }
}

}  // namespace

void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs, bool inverse) {
  check_hadamard_args(rows, n, m);
  if (m > 1 && n / m < 8) {
    const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
    tbb::parallel_for(int64_t{0}, tiles, [&](int64_t t) {
      const int64_t r0 = t * kTileRows;
      transform_tile(x + r0 * n, std::min(kTileRows, rows - r0), n, hm, m, signs, inverse);
    });
    return;
  }
  tbb::parallel_for(int64_t{0}, rows, [&](int64_t r) {
    thread_local std::vector<float> scratch;
    transform_row(x + r * n, n, hm, m, signs, inverse, scratch);
  });
}

}  // namespace streamq::cpu
