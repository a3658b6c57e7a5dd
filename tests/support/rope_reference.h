// RoPE for the tests: HF's default table (theta 10000) and the float64
// rotation of every (i, i + head_dim/2) pair from the definition, forward or
// inverse (the transpose: the backward). Header-only, like
// backend_test_util.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace streamq::test {

// cos and sin of p * 10000^(-2i / head_dim), [max_pos, head_dim/2] row-major.
struct HfRopeTable {
  std::vector<float> cos, sin;
};

inline HfRopeTable hf_rope_table(int64_t max_pos, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  HfRopeTable t;
  for (int64_t p = 0; p < max_pos; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(p) * std::pow(10000.0, -2.0 * double(i) / double(head_dim));
      t.cos.push_back(static_cast<float>(std::cos(angle)));
      t.sin.push_back(static_cast<float>(std::sin(angle)));
    }
  return t;
}

// HF rotate_half in float64, rows of nheads * hd, position row % seqlen:
// y_lo = x_lo c - x_hi s, y_hi = x_hi c + x_lo s; with inverse the rotation
// by -angle, y_lo = x_lo c + x_hi s, y_hi = x_hi c - x_lo s.
template <typename T>
std::vector<double> rope64(const std::vector<T>& x, const std::vector<float>& cos, const std::vector<float>& sin,
                           int64_t nseq, int64_t seqlen, int64_t nheads, int64_t hd, bool inverse = false) {
  const int64_t half = hd / 2, width = nheads * hd;
  std::vector<double> y(x.size());
  for (int64_t row = 0; row < nseq * seqlen; ++row)
    for (int64_t h = 0; h < nheads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const int64_t lo = row * width + h * hd + i, pos = row % seqlen;
        const double c = cos[pos * half + i], s = inverse ? -double(sin[pos * half + i]) : sin[pos * half + i];
        const double x1 = x[lo], x2 = x[lo + half];
        y[lo] = x1 * c - x2 * s;
        y[lo + half] = x2 * c + x1 * s;
      }
  return y;
}

}  // namespace streamq::test
