// LoaQ (layer-wise output approximation): the transformed target a method
// quantizes instead of W, so that the quantized model's (normalized) sub-layer
// outputs approximate the FP model's.
//
// Derivation in streamq's convention. The paper writes tokens x features:
// X, X^ [T, N] (FP and quantized flows), W [N, M], H = X^T X^, C = X^T (X - X^)
// (hat on the first factor), residual streams h, h^ [T, M], and the target
//   W~ = (I + a H^-1 C) W + b H^-1 X^'T (s h - s^ h^)      (Algorithm 1, line 18)
// streamq stores W as (out m, in n) = W_paper^T, inputs as x[t] columns, and
// accumulates H = X X^T (quantized flow) and D1 = dX X^T with dX = X~ - X,
// so C_paper = D1^T and, transposing the whole target,
//   W~ = W (I + a D1 H^-1) + b E H^-1,   E = sum_t (s_t h_t - s^_t h^_t) x'_t^T  [m, n].
// For input projections (q,k,v; gate,up) b's term is absent. For output
// projections (o_proj, down_proj) h, h^ are the residual streams the output is
// added to; with --loaq-norm every token of both flows is rescaled by the RMS
// factor of its sub-layer output, s_t = r(h_t + W x~_t), s^_t = r(h^_t + W x_t)
// (r(v) = (mean v^2 + eps)^-1/2; Eq. 12 uses h^ in s^, Algorithm 1 line 11
// prints h, which we read as a typo), before H, D1 and E are formed.
// H^-1 is the damped inverse (percdamp of mean diag, dead inputs set to 1).
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

class Backend;
class LinearStats;

struct LoaqConfig {
  bool enabled = false;
  double alpha = 0.5;  // linear-layer output term (paper's grid: 0..1)
  double beta = 0.5;   // sub-layer (residual) term for o_proj/down_proj
  bool norm = false;   // normalized sub-layer output approximation
};

// W~ from float64 statistics: h = X X^T [n, n] (undamped), d1 = dX X^T [n, n]
// (null: no linear-layer term), e = residual cross term [m, n] (null: none).
std::vector<double> loaq_target(Backend& backend, const double* w, int64_t m, int64_t n,
                                const std::vector<double>& h, const std::vector<double>* d1,
                                const std::vector<double>* e, double alpha, double beta, double percdamp);

// Per-token RMS factors r(h_t + y_t) of a sub-layer output; h, y [tokens, width].
void loaq_token_scales(const float* h, const float* y, int64_t tokens, int64_t width, double eps, float* out);

}  // namespace streamq
