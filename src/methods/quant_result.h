// What quantizing one linear produces: the integer codes with their grids (what
// the GPTQ export packs) and the dequantized weights (the fake-quant model).
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

struct QuantResult {
  int64_t rows = 0, cols = 0;  // (out, in)
  int bits = 0;
  int64_t group = -1;          // -1: per channel
  int64_t ngroups = 1;
  std::vector<double> dequant;  // [rows, cols], original column order
  std::vector<uint8_t> codes;   // [rows, cols], in [0, 2^bits - 1]
  std::vector<double> scales;   // [ngroups, rows]
  std::vector<double> zeros;    // [ngroups, rows], integer values
  std::vector<int32_t> g_idx;   // [cols]: the group of each input column
  std::vector<int32_t> perm;    // processing order (identity without act-order)
  int cholesky_retries = 0;
  double damp = 0;              // damping actually added to diag(H)
  int64_t dead_inputs = 0;      // columns with diag(H) == 0
  double seconds_factor = 0;    // damping + Cholesky + inverse factor
  double seconds_sweep = 0;     // the column sweep
  uint64_t working_bytes = 0;   // peak bytes the method held for this linear (compensation paper, Table 10)
};

// ||(W - Q) X||^2 / tokens from the raw sum X X^T ([cols, cols]): the mean per
// token of the squared output error, the layer objective every method reports.
class Backend;
double layer_objective(Backend& backend, const double* w, const QuantResult& r,
                       const std::vector<double>& xx_sum, int64_t tokens);

}  // namespace streamq
