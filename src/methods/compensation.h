// The GPTAQ/CAE compensation matrix P = triu(D U^T, 1) U, formed with GEMMs
// on triangular panels (about 2/3 n^3 FLOPs instead of two full 2 n^3
// products), and the FLOP counts the benchmark reports.
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

class Backend;

// Panel widths of the blocked triangular products. The first product runs on
// column panels (each GEMM is j1 tall, so the CPU backend's tiles still spread
// over every core); the second on square panels, each a [s, s] output.
struct CompensationPanels {
  int64_t first = 256;
  int64_t second = 512;
};
CompensationPanels compensation_panels(int64_t n);

// P = alpha * triu(D U^T, 1) U for d[n, n] (any) and u[n, n] upper triangular
// with its strict lower triangle zero. P is strictly upper triangular; its
// lower triangle and diagonal are written as exact zeros. Equal to the two
// full GEMMs up to float64 rounding (the skipped products are exact zeros).
std::vector<double> compensation_matrix_triangular(Backend& be, const std::vector<double>& d,
                                                   const std::vector<double>& u, int64_t n, double alpha);
// Its two products on pointers in `be`'s memory (a device's too), so a device
// can free D between them: t = triu(D U^T, 1), then p = alpha * t U. t and p
// [n, n] are overwritten entirely. In float64, or float32 (a device's float
// factor).
void compensation_t(Backend& be, const double* d, const double* u, double* t, int64_t n);
void compensation_t(Backend& be, const float* d, const float* u, float* t, int64_t n);
void compensation_p(Backend& be, const double* t, const double* u, double* p, int64_t n, double alpha);
void compensation_p(Backend& be, const float* t, const float* u, float* p, int64_t n, float alpha);

// FLOPs (2 per multiply-add) of compensation_matrix_triangular as blocked, and
// the triangular ideal n^3/3 + n^3/3 for reference.
double compensation_flops_blocked(int64_t n, const CompensationPanels& p);
inline double compensation_flops_ideal(int64_t n) { return 2.0 / 3.0 * double(n) * double(n) * double(n); }

}  // namespace streamq
