// The float64 causal GQA attention every attention backend is checked
// against (CPU test and CUDA test), with its inputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "tests/support/backend_test_util.h"

namespace streamq::test {

struct AttentionCase {
  int64_t nseq, seqlen, nheads, nkv, hd;
};

inline std::ostream& operator<<(std::ostream& os, const AttentionCase& c) {
  return os << "nseq=" << c.nseq << " seqlen=" << c.seqlen << " nheads=" << c.nheads << " nkv=" << c.nkv
            << " hd=" << c.hd;
}

struct AttentionInputs {
  std::vector<float> q, k, v;
  AttentionInputs(std::mt19937_64& rng, const AttentionCase& c)
      : q(random_normal<float>(rng, c.nseq * c.seqlen * c.nheads * c.hd)),
        k(random_normal<float>(rng, c.nseq * c.seqlen * c.nkv * c.hd)),
        v(random_normal<float>(rng, c.nseq * c.seqlen * c.nkv * c.hd)) {}
};

// Straight from the definition: per sequence, head and query t, softmax over
// keys 0..t of q.k / sqrt(hd), then the weighted sum of v. `mag` gets the same
// weighted sum of |v| (the scale errors are normalized by: outputs average
// random-sign values and may cancel).
inline void reference_attention(const AttentionInputs& in, const AttentionCase& c, std::vector<double>& out,
                                std::vector<double>& mag) {
  const int64_t qw = c.nheads * c.hd, kw = c.nkv * c.hd;
  out.assign(c.nseq * c.seqlen * qw, 0.0);
  mag.assign(out.size(), 0.0);
  std::vector<double> p(c.seqlen);
  for (int64_t s = 0; s < c.nseq; ++s)
    for (int64_t h = 0; h < c.nheads; ++h) {
      const int64_t g = h / (c.nheads / c.nkv);
      for (int64_t t = 0; t < c.seqlen; ++t) {
        const float* qr = &in.q[(s * c.seqlen + t) * qw + h * c.hd];
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= t; ++j) {
          const float* kr = &in.k[(s * c.seqlen + j) * kw + g * c.hd];
          double d = 0.0;
          for (int64_t i = 0; i < c.hd; ++i) d += double(qr[i]) * kr[i];
          p[j] = d / std::sqrt(double(c.hd));
          mx = std::max(mx, p[j]);
        }
        for (int64_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - mx));
        double* o = &out[(s * c.seqlen + t) * qw + h * c.hd];
        double* m = &mag[(s * c.seqlen + t) * qw + h * c.hd];
        for (int64_t j = 0; j <= t; ++j) {
          const float* vr = &in.v[(s * c.seqlen + j) * kw + g * c.hd];
          for (int64_t i = 0; i < c.hd; ++i) {
            o[i] += p[j] / sum * vr[i];
            m[i] += p[j] / sum * std::abs(vr[i]);
          }
        }
      }
    }
}

// The same definition on float64 inputs, without the magnitudes: the forward
// the backward tests' central differences evaluate.
inline std::vector<double> attention64(const std::vector<double>& q, const std::vector<double>& k,
                                       const std::vector<double>& v, int64_t nseq, int64_t seqlen, int64_t nheads,
                                       int64_t nkv, int64_t hd) {
  const int64_t qw = nheads * hd, kw = nkv * hd;
  std::vector<double> out(q.size(), 0.0), p(seqlen);
  for (int64_t s = 0; s < nseq; ++s)
    for (int64_t h = 0; h < nheads; ++h) {
      const int64_t g = h / (nheads / nkv);
      for (int64_t t = 0; t < seqlen; ++t) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= t; ++j) {
          double d = 0;
          for (int64_t i = 0; i < hd; ++i) d += q[(s * seqlen + t) * qw + h * hd + i] * k[(s * seqlen + j) * kw + g * hd + i];
          p[j] = d / std::sqrt(double(hd));
          mx = std::max(mx, p[j]);
        }
        for (int64_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t i = 0; i < hd; ++i)
            out[(s * seqlen + t) * qw + h * hd + i] += p[j] / sum * v[(s * seqlen + j) * kw + g * hd + i];
      }
    }
  return out;
}

}  // namespace streamq::test
