// A vectorized float exp for the CPU kernels' hot loops: the softmaxes of
// attention and of the eval loss, and SiLU. libm's scalar expf/exp were a
// tenth of `streamq eval` (issue 16); this one runs 16 lanes at a time in
// whatever vector ISA the CPU has (AVX-512, AVX2, else SSE2), with the same
// results on each: the arithmetic is the same IEEE operations in the same
// order (the file is compiled without FMA contraction).
#pragma once

#include <cstdint>

namespace streamq::cpu {

// exp(x) with at most kVecExpMaxUlp ulp of error (Cephes' expf: a rounded
// reduction by ln 2 in two parts, a degree-7 polynomial, and 2^n), for
// -87.336 <= x <= 88.376; below that it returns 0 (exp < 1.2e-38, the
// smallest normal float), above +inf (exp > 2.7e38), NaN for NaN. The scalar
// form of the vector code below, for tests and short tails.
float vec_exp_scalar(float x);
// Measured over 8 million floats spread over [-87.3, 88.3] and a million
// random ones (tests/kernels/test_vec_exp.cpp): 0.96 ulp at worst; the
// callers' error budgets use 2.
inline constexpr double kVecExpMaxUlp = 2.0;

// out[i] = exp(x[i] - shift) for i < n (vec_exp_scalar's values; out may be x,
// or null to keep only the sum). Returns the sum of those floats accumulated
// in double, 16 lanes summed in lane order at the end: one fixed order, so
// the same double for the same inputs on any thread and any ISA.
double exp_shifted_sum(const float* x, float shift, int64_t n, float* out);

// The largest of x[0..n) (n >= 1). A NaN may or may not come out; a caller
// that then sums exp(x - max) over the row gets NaN from it either way.
float max_of(const float* x, int64_t n);

// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] (SiLU(gate) * up), with
// vec_exp_scalar's exp; out may alias gate or up.
void swiglu_span(const float* gate, const float* up, float* out, int64_t n);

}  // namespace streamq::cpu
