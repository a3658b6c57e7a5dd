// GPTQ (lazy-batch blocked sweep over the Cholesky factor of H^-1) and RTN,
// in float64, on one linear's weights.
#pragma once

#include <cstdint>
#include <vector>

#include "methods/quant_config.h"
#include "methods/quant_result.h"

namespace streamq {

class Backend;

// Quantizes w[m, n] (row-major, (out, in)) given the Hessian h[n, n] of its
// input (undamped; dead inputs are those with h_ii == 0). The update is the
// exact one: group grids are fitted on the current, compensated weights when
// their first column is reached, so the result does not depend on blocksize.
// Throws InternalError when H stays indefinite after cfg.max_damp_retries.
QuantResult gptq_quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                          const std::vector<double>& h, const QuantConfig& cfg);

// Round-to-nearest on the same grids (groups in natural column order).
QuantResult rtn_quantize(const double* w, int64_t m, int64_t n, const QuantConfig& cfg);

// Columns in processing order: by descending h_ii (ties by index) with
// act-order, identity otherwise.
std::vector<int32_t> processing_order(const std::vector<double>& h, int64_t n, bool act_order);

}  // namespace streamq
