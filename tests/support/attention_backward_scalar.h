// Causal GQA attention's backward one query row at a time, in plain scalar
// loops: the order of rounded float and float64 operations that
// cpu::attention_backward (two passes, keys as vector lanes) and its CUDA
// twin must reproduce bit for bit. This was the CPU op itself until the
// two-pass version replaced it (it was 13% of a learned SmolLM2 job's CPU
// time, by perf);
// kept here as the obviously sequential definition of those bits.
// Its includer must build without FMA contraction (CMakeLists.txt says so
// for tests/kernels/test_backward_ops.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace streamq::test {

// Sequence s, kv head kvh: dq of the group's query heads, dk and dv of kvh
// (the op's one task per (sequence, kv head) before the two passes).
inline void attention_backward_scalar_group(const float* q, const float* k, const float* v, const float* dout,
                                            float* dq, float* dk, float* dv, int64_t n, int64_t nheads, int64_t nkv,
                                            int64_t hd, int64_t s, int64_t kvh) {
  const int64_t group = nheads / nkv, q_stride = nheads * hd, kv_stride = nkv * hd;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  std::vector<float> p(static_cast<size_t>(n)), dp(static_cast<size_t>(n));
  std::vector<double> dqa(static_cast<size_t>(hd)), dka(static_cast<size_t>(n * hd)), dva(dka.size());
  const float* k_base = k + s * n * kv_stride + kvh * hd;
  const float* v_base = v + s * n * kv_stride + kvh * hd;
  for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const float* q_row = q + (s * n + i) * q_stride + h * hd;
      const float* do_row = dout + (s * n + i) * q_stride + h * hd;
      float mx = -INFINITY;
      for (int64_t j = 0; j <= i; ++j) {
        float dot = 0.0f;
        for (int64_t d = 0; d < hd; ++d) dot += q_row[d] * k_base[j * kv_stride + d];
        p[j] = dot * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      const float denom = static_cast<float>(sum);
      double big_d = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        p[j] /= denom;
        float dot = 0.0f;
        for (int64_t d = 0; d < hd; ++d) dot += do_row[d] * v_base[j * kv_stride + d];
        dp[j] = dot;
        big_d += static_cast<double>(p[j]) * dot;
      }
      std::fill(dqa.begin(), dqa.end(), 0.0);
      for (int64_t j = 0; j <= i; ++j) {
        const double pj = p[j];
        const double ds = pj * (dp[j] - big_d) * scale;
        for (int64_t d = 0; d < hd; ++d) {
          dqa[d] += ds * k_base[j * kv_stride + d];
          dka[j * hd + d] += ds * q_row[d];
          dva[j * hd + d] += pj * do_row[d];
        }
      }
      for (int64_t d = 0; d < hd; ++d) dq[(s * n + i) * q_stride + h * hd + d] = static_cast<float>(dqa[d]);
    }
  }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) {
      dk[(s * n + j) * kv_stride + kvh * hd + d] = static_cast<float>(dka[j * hd + d]);
      dv[(s * n + j) * kv_stride + kvh * hd + d] = static_cast<float>(dva[j * hd + d]);
    }
}

inline void attention_backward_scalar(const float* q, const float* k, const float* v, const float* dout, float* dq,
                                      float* dk, float* dv, int64_t nseq, int64_t n, int64_t nheads, int64_t nkv,
                                      int64_t hd) {
  for (int64_t s = 0; s < nseq; ++s)
    for (int64_t kvh = 0; kvh < nkv; ++kvh)
      attention_backward_scalar_group(q, k, v, dout, dq, dk, dv, n, nheads, nkv, hd, s, kvh);
}

}  // namespace streamq::test
