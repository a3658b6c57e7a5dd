// GPTQ (lazy-batch blocked sweep over the Cholesky factor of H^-1) and RTN,
// in float64, on one linear's weights.
#pragma once

#include <cstdint>
#include <vector>

#include "methods/quant_config.h"
#include "methods/quant_result.h"

namespace streamq {

class Backend;

// The part of GPTQ that depends only on the Hessian, shared by the linears
// that read one input (q,k,v; gate,up): dead inputs, processing order, and the
// damped factor U with (H + damp I)^-1 = U^T U, in processing order.
struct FactoredHessian {
  int64_t n = 0;
  std::vector<double> u;        // [n, n] upper triangular
  std::vector<int32_t> perm;    // processing order
  std::vector<uint8_t> dead;    // [n], original order: diag(H) == 0
  int64_t dead_inputs = 0;
  double damp = 0;              // damping actually added
  int cholesky_retries = 0;
  double seconds = 0;
};

// Damps and factors h[n, n] (undamped), growing the damping tenfold per retry
// when the factorization fails. Throws InternalError after cfg.max_damp_retries.
FactoredHessian factor_hessian(Backend& backend, const std::vector<double>& h, int64_t n,
                               const QuantConfig& cfg);

// Quantizes w[m, n] (row-major, (out, in)) given the Hessian h[n, n] of its
// input (undamped; dead inputs are those with h_ii == 0). The update is the
// exact one: group grids are fitted on the current, compensated weights when
// their first column is reached, so the result does not depend on blocksize.
// Throws InternalError when H stays indefinite after cfg.max_damp_retries.
QuantResult gptq_quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                          const std::vector<double>& h, const QuantConfig& cfg);
// The same with the Hessian already factored (cfg must be the one it was factored with).
QuantResult gptq_quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                          const FactoredHessian& f, const QuantConfig& cfg);

// Round-to-nearest on the same grids (groups in natural column order).
QuantResult rtn_quantize(const double* w, int64_t m, int64_t n, const QuantConfig& cfg);

// Columns in processing order: by descending h_ii (ties by index) with
// act-order, identity otherwise.
std::vector<int32_t> processing_order(const std::vector<double>& h, int64_t n, bool act_order);

}  // namespace streamq
