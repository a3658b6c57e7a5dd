// Built with -mavx2 -ffp-contract=off (CMakeLists.txt): no multiply-add is
// fused, so each lane's |q - x| is Grid::code + Grid::dequant's double result.
// Nothing here runs unless available() (grid.cpp, built for the baseline
// ISA so that asking cannot fault) says the CPU has AVX2 and FMA.
#include "src/methods/grid_mse_avx2.h"

#include <immintrin.h>
#include <sleef.h>

#include <cmath>

namespace streamq::grid_mse_avx2 {

namespace {

// Grid::code (round half to even, clamp to [0, maxq]) and Grid::dequant, four lanes.
inline __m256d abs_error(__m256d v, __m256d s, __m256d z, __m256d mq, bool free_min) {
  const __m256d zero = _mm256_setzero_pd();
  constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  __m256d c = free_min ? _mm256_round_pd(_mm256_div_pd(_mm256_sub_pd(v, z), s), kNearest)
                       : _mm256_add_pd(_mm256_round_pd(_mm256_div_pd(v, s), kNearest), z);
  c = _mm256_min_pd(_mm256_max_pd(c, zero), mq);
  const __m256d q = free_min ? _mm256_add_pd(_mm256_mul_pd(s, c), z) : _mm256_mul_pd(s, _mm256_sub_pd(c, z));
  return _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_sub_pd(q, v));
}

inline double hsum(__m256d a) {
  const __m128d lo = _mm256_castpd256_pd128(a), hi = _mm256_extractf128_pd(a, 1);
  const __m128d s = _mm_add_pd(lo, hi);
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

}  // namespace

double approx_err_sum(const double* x, int64_t len, double scale, double zero, double maxq, bool free_min, float norm,
                      double stop_above) {
  const __m256d s = _mm256_set1_pd(scale), z = _mm256_set1_pd(zero), mq = _mm256_set1_pd(maxq);
  const __m256 nv = _mm256_set1_ps(norm);
  __m256d acc = _mm256_setzero_pd();
  int64_t k = 0;
  for (; k + 8 <= len; k += 8) {
    const __m128 lo = _mm256_cvtpd_ps(abs_error(_mm256_loadu_pd(x + k), s, z, mq, free_min));
    const __m128 hi = _mm256_cvtpd_ps(abs_error(_mm256_loadu_pd(x + k + 4), s, z, mq, free_min));
    const __m256 p = Sleef_powf8_u10avx2(_mm256_set_m128(hi, lo), nv);
    acc = _mm256_add_pd(acc, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(p)),
                                           _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1))));
    if ((k & 15) == 8 && hsum(acc) > stop_above) return hsum(acc);
  }
  double sum = hsum(acc);
  if (k < len) {  // the last values, four lanes padded with copies of x[len - 1] whose terms are dropped
    alignas(32) double tail[8], err[8];
    for (int j = 0; j < 8; ++j) tail[j] = x[k + j < len ? k + j : len - 1];
    _mm256_store_pd(err, abs_error(_mm256_load_pd(tail), s, z, mq, free_min));
    _mm256_store_pd(err + 4, abs_error(_mm256_load_pd(tail + 4), s, z, mq, free_min));
    for (int64_t j = 0; k + j < len; ++j) sum += std::pow(err[j], static_cast<double>(norm));
  }
  return sum;
}

}  // namespace streamq::grid_mse_avx2
