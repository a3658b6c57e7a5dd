// P = alpha * triu(D U^T, 1) U on triangular panels.
//
// FLOPs (n = 4096): the two full GEMMs cost 4 n^3 = 274.9 G. Exploiting
// the structure: T = triu(D U^T, 1) needs T[a, b] only for a < b, and
// U^T[k, b] = U[b, k] vanishes for k < b, so T[a, b] = sum_{k >= b} D[a,k]
// U[b,k] for a < b: n^3/6 multiply-adds, n^3/3 FLOPs. P = T U with T strictly
// upper and U upper: P[a, c] = sum_{a < k <= c} T[a,k] U[k,c], again n^3/3.
// Ideal 2/3 n^3 = 45.8 G; as blocked below (panels 256 and 512) 27.4 + 32.2 =
// 59.6 G, the excess being the triangles inside the diagonal panels.
#include "src/methods/compensation.h"

#include <algorithm>

#include "kernels/backend.h"

namespace streamq {

CompensationPanels compensation_panels(int64_t n) {
  // About eight square panels for the second product, so that each GEMM's
  // output ([s, s]) spans several of the CPU backend's 256 x 512 tiles while
  // the diagonal-panel excess ((N+1)(N+2)/N^2 of the ideal) stays near 1.4x.
  CompensationPanels p;
  p.second = std::clamp<int64_t>((n / 8 + 127) / 128 * 128, 256, 1024);
  return p;
}

namespace {

template <typename T>
void compensation_t_impl(Backend& be, const T* d, const T* u, T* t, int64_t n) {
  const CompensationPanels panels = compensation_panels(n);
  be.fill_bytes(t, 0, static_cast<uint64_t>(n * n) * sizeof(T));
  // T[0:j1, J] = D[0:j1, j0:n] U[J, j0:n]^T for column panel J = [j0, j1):
  // rows past j1 are below the diagonal, and columns k < j0 of U's rows J are zero.
  for (int64_t j0 = 0; j0 < n; j0 += panels.first) {
    const int64_t j1 = std::min(n, j0 + panels.first);
    be.gemm(Trans::N, Trans::T, j1, j1 - j0, n - j0, T(1), d + j0, n, u + j0 * n + j0, n, T(0), t + j0, n);
    for (int64_t a = j0; a < j1; ++a)  // keep the strict upper triangle
      be.fill_bytes(t + a * n + j0, 0, static_cast<uint64_t>(std::min(j1, a + 1) - j0) * sizeof(T));
  }
}

template <typename T>
void compensation_p_impl(Backend& be, const T* t, const T* u, T* p, int64_t n, T alpha) {
  const CompensationPanels panels = compensation_panels(n);
  be.fill_bytes(p, 0, static_cast<uint64_t>(n * n) * sizeof(T));
  // P[A, C] = T[A, a0:c1] U[a0:c1, C] for row panel A = [a0, a1) and column
  // panels C = [c0, c1) at or right of it: T[A, k] vanishes for k <= a0 and
  // U[k, C] for k >= c1. Panels left of the diagonal stay zero.
  for (int64_t a0 = 0; a0 < n; a0 += panels.second) {
    const int64_t a1 = std::min(n, a0 + panels.second);
    for (int64_t c0 = a0; c0 < n; c0 += panels.second) {
      const int64_t c1 = std::min(n, c0 + panels.second);
      be.gemm(Trans::N, Trans::N, a1 - a0, c1 - c0, c1 - a0, alpha, t + a0 * n + a0, n, u + a0 * n + c0, n, T(0),
              p + a0 * n + c0, n);
    }
  }
}

}  // namespace

void compensation_t(Backend& be, const double* d, const double* u, double* t, int64_t n) {
  compensation_t_impl(be, d, u, t, n);
}
void compensation_t(Backend& be, const float* d, const float* u, float* t, int64_t n) {
  compensation_t_impl(be, d, u, t, n);
}
void compensation_p(Backend& be, const double* t, const double* u, double* p, int64_t n, double alpha) {
  compensation_p_impl(be, t, u, p, n, alpha);
}
void compensation_p(Backend& be, const float* t, const float* u, float* p, int64_t n, float alpha) {
  compensation_p_impl(be, t, u, p, n, alpha);
}

std::vector<double> compensation_matrix_triangular(Backend& be, const std::vector<double>& d,
                                                   const std::vector<double>& u, int64_t n, double alpha) {
  std::vector<double> t(static_cast<size_t>(n * n)), p(static_cast<size_t>(n * n));
  compensation_t(be, d.data(), u.data(), t.data(), n);
  compensation_p(be, t.data(), u.data(), p.data(), n, alpha);
  return p;
}

double compensation_flops_blocked(int64_t n, const CompensationPanels& panels) {
  double flops = 0;
  for (int64_t j0 = 0; j0 < n; j0 += panels.first) {
    const int64_t j1 = std::min(n, j0 + panels.first);
    flops += 2.0 * double(j1) * double(j1 - j0) * double(n - j0);
  }
  for (int64_t a0 = 0; a0 < n; a0 += panels.second) {
    const int64_t a1 = std::min(n, a0 + panels.second);
    for (int64_t c0 = a0; c0 < n; c0 += panels.second) {
      const int64_t c1 = std::min(n, c0 + panels.second);
      flops += 2.0 * double(a1 - a0) * double(c1 - c0) * double(c1 - a0);
    }
  }
  return flops;
}

}  // namespace streamq
