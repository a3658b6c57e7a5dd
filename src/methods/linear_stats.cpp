// Chunked accumulation of X^T X.
#include "methods/linear_stats.h"

#include "kernels/backend.h"

namespace streamq {

LinearStats::LinearStats(int64_t in_features)
    : n_(in_features), xx_(static_cast<size_t>(in_features * in_features), 0.0) {}

void LinearStats::accumulate(Backend& backend, const float* x, int64_t tokens, int64_t nseq) {
  chunk_.assign(static_cast<size_t>(n_ * n_), 0.0f);
  backend.gemm(Trans::T, Trans::N, n_, n_, tokens, 1.0f, x, n_, x, n_, 0.0f, chunk_.data(), n_);
  for (size_t i = 0; i < xx_.size(); ++i) xx_[i] += chunk_[i];
  tokens_ += tokens;
  nseq_ += nseq;
}

std::vector<double> LinearStats::hessian() const {
  std::vector<double> h(xx_);
  const double scale = nseq_ > 0 ? 2.0 / static_cast<double>(nseq_) : 1.0;
  for (double& v : h) v *= scale;
  return h;
}

}  // namespace streamq
