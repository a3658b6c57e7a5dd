// LoaQ's transformed target (see loaq.h for the derivation).
#include "src/methods/loaq.h"

#include <cmath>
#include <string>

#include "src/core/error.h"
#include "kernels/backend.h"

namespace streamq {

std::vector<double> loaq_target(Backend& be, const double* w, int64_t m, int64_t n, const std::vector<double>& h_in,
                                const std::vector<double>* d1, const std::vector<double>* e, double alpha,
                                double beta, double percdamp) {
  // M = a W D1 + b E; the target is W + M H^-1.
  std::vector<double> mat(static_cast<size_t>(m * n), 0.0);
  if (d1 && alpha != 0.0) be.gemm(Trans::N, Trans::N, m, n, n, alpha, w, n, d1->data(), n, 0.0, mat.data(), n);
  if (e && beta != 0.0)
    for (size_t i = 0; i < mat.size(); ++i) mat[i] += beta * (*e)[i];

  std::vector<double> h(h_in);
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (h[i * n + i] == 0.0) h[i * n + i] = 1.0;  // dead input, as GPTQ does
    mean += h[i * n + i];
  }
  mean /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) h[i * n + i] += percdamp * mean;
  if (!be.cholesky_lower(h.data(), n))
    throw InternalError("LoaQ: damped Hessian [" + std::to_string(n) + "x" + std::to_string(n) +
                        "] is not positive definite");
  be.invert_lower_triangular(h.data(), n);  // h = L^-1, and H^-1 = L^-T L^-1
  std::vector<double> t(static_cast<size_t>(m * n));
  be.gemm(Trans::N, Trans::T, m, n, n, 1.0, mat.data(), n, h.data(), n, 0.0, t.data(), n);   // M L^-T
  std::vector<double> target(w, w + m * n);
  be.gemm(Trans::N, Trans::N, m, n, n, 1.0, t.data(), n, h.data(), n, 1.0, target.data(), n);  // + (M L^-T) L^-1
  return target;
}

void loaq_token_scales(const float* h, const float* y, int64_t tokens, int64_t width, double eps, float* out) {
  for (int64_t t = 0; t < tokens; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < width; ++i) {
      const double v = static_cast<double>(h[t * width + i]) + y[t * width + i];
      ss += v * v;
    }
    out[t] = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(width) + eps));
  }
}

}  // namespace streamq
