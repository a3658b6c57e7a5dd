// The MSE clip search's candidate sums, approximately and fast: AVX2 lanes
// for the quantization (the same IEEE operations as Grid::quantize, so every
// error |q - x| is Grid's to the bit) and SLEEF's float32 pow (1 ulp) for the
// powers, summed in double. Grid::fit only uses these sums to rule candidates
// out with a proven error bound and computes the survivors exactly, so the
// grid it picks never depends on this file (grid.cpp says why).
#pragma once
#include <cstdint>

namespace streamq::grid_mse_avx2 {

// Whether this CPU runs approx_err_sum (AVX2 and FMA, SLEEF's avx2 pow).
bool available();

// Sum over k < len of |q(x[k]) - x[k]|^norm for the grid (scale, zero, maxq;
// free_min: x = scale * code + zero), each power in float32; returns the
// partial sum once it exceeds stop_above (checked every 16 values), which
// only ever underestimates the full sum (the terms are >= 0).
double approx_err_sum(const double* x, int64_t len, double scale, double zero, double maxq, bool free_min, float norm,
                      double stop_above);

}  // namespace streamq::grid_mse_avx2
