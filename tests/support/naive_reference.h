// The slow, obviously-correct float64 reference for every GPTQ-family method:
// at each column it quantizes, forms the column's residual explicitly
//   rho_q = (w_q - q_q) x_q + a1 * a_q dx_q + a2 * c_q x~_q
// (GPTQ; GPTAQ's P1 term; CAE's P2 term) and fits it onto all remaining
// columns by solving the remaining damped Hessian directly (compensation
// paper Eq. 10-19). The official variant's shortcuts are reproduced by what
// it carries across block boundaries and when group grids are fitted.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "src/methods/quant_config.h"

namespace streamq::test {

struct NaiveLayer {
  int64_t m = 0, n = 0, tokens = 0;
  std::vector<double> w;     // [m, n]
  std::vector<double> x;     // [n, tokens], quantized-flow input
  std::vector<double> x_fp;  // [n, tokens], FP-flow input
  // Statistics as the pipeline scales them (one sequence): 2 X X^T, 2 dX X^T.
  std::vector<double> h() const;
  std::vector<double> cross() const;
};

// Random layer with correlated inputs (channel scales spread ~10x), an FP
// flow that deviates from X by `deviation` relative noise, and optionally one
// dead input channel (zero in both flows).
NaiveLayer random_naive_layer(std::mt19937_64& rng, int64_t m, int64_t n, bool dead_input, double deviation);

struct NaiveResult {
  std::vector<double> q;        // [m, n] original order
  std::vector<uint8_t> codes;
  std::vector<bool> tie_rows;   // rows where a rounding decision sat within 1e-9 of a tie
};

NaiveResult naive_quantize(const NaiveLayer& layer, const QuantConfig& cfg);

}  // namespace streamq::test
