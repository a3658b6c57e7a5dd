// See random_orthogonal.h.
#include "src/methods/random_orthogonal.h"

#include <cblas.h>
#include <lapacke.h>

#include <cmath>
#include <random>
#include <string>

#include "src/core/error.h"

namespace streamq {

std::vector<double> random_orthogonal_matrix(int64_t n, uint64_t seed) {
  if (n < 1) throw InternalError("random_orthogonal_matrix: n = " + std::to_string(n));
  std::mt19937_64 rng(seed ^ 0x6f7274686f676f6eULL);  // "orthogon": streams apart from other seeded draws
  const double two_pi = 6.283185307179586476925286766559;
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };  // (0, 1)
  // Column-major for LAPACK: a[i + j n] is row i, column j.
  std::vector<double> a(static_cast<size_t>(n * n));
  for (size_t k = 0; k < a.size(); k += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = two_pi * uniform();
    a[k] = r * std::cos(t);
    if (k + 1 < a.size()) a[k + 1] = r * std::sin(t);
  }
  std::vector<double> tau(static_cast<size_t>(n));
  if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, n, n, a.data(), n, tau.data()) != 0)
    throw InternalError("random_orthogonal_matrix: dgeqrf failed");
  std::vector<double> rdiag(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) rdiag[j] = a[j + j * n];
  if (LAPACKE_dorgqr(LAPACK_COL_MAJOR, n, n, n, a.data(), n, tau.data()) != 0)
    throw InternalError("random_orthogonal_matrix: dorgqr failed");
  std::vector<double> q(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) q[i * n + j] = (rdiag[j] < 0 ? -1.0 : 1.0) * a[i + j * n];
  return q;
}

RandomOrthogonalRotation::RandomOrthogonalRotation(int64_t n, uint64_t seed) : n_(n) {
  const std::vector<double> q = random_orthogonal_matrix(n, seed);
  q_.assign(q.begin(), q.end());
}

void RandomOrthogonalRotation::multiply(float* x, int64_t rows, bool transposed) const {
  // Panels of rows through a scratch copy (the product cannot be in place).
  constexpr int64_t kPanel = 256;
  std::vector<float> in(static_cast<size_t>(std::min(rows, kPanel) * n_));
  for (int64_t r0 = 0; r0 < rows; r0 += kPanel) {
    const int64_t r = std::min(kPanel, rows - r0);
    float* xs = x + r0 * n_;
    std::copy(xs, xs + r * n_, in.begin());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposed ? CblasTrans : CblasNoTrans, static_cast<int>(r),
                static_cast<int>(n_), static_cast<int>(n_), 1.0f, in.data(), static_cast<int>(n_), q_.data(),
                static_cast<int>(n_), 0.0f, xs, static_cast<int>(n_));
  }
}

void RandomOrthogonalRotation::apply(float* x, int64_t rows) const { multiply(x, rows, false); }
void RandomOrthogonalRotation::inverse(float* x, int64_t rows) const { multiply(x, rows, true); }

}  // namespace streamq
