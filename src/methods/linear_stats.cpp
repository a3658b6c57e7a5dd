// Chunked accumulation of X^T X: each chunk's float product in a buffer of
// the backend that computes it, summed into float64 on the host.
#include "src/methods/linear_stats.h"

#include "src/core/error.h"
#include "kernels/backend.h"

namespace streamq {
namespace {

// The product on the host: read in place on a host backend (no copy, the
// bytes it always summed), downloaded into `staging` otherwise.
const float* on_host(Backend& be, const Buffer<float>& product, std::vector<float>& staging) {
  if (be.host_addressable()) return product.data();
  staging.resize(product.size());
  be.download(staging.data(), product, product.size());
  be.synchronize();
  return staging.data();
}

}  // namespace

LinearStats::LinearStats(int64_t in_features)
    : n_(in_features), xx_(static_cast<size_t>(in_features * in_features), 0.0) {}

void LinearStats::accumulate(Backend& backend, const float* x, int64_t tokens, int64_t nseq) {
  if (!dxx_.empty()) throw InternalError("LinearStats: a chunk without the cross term after chunks with one");
  add_xx(backend, x, tokens, nseq);
}

void LinearStats::add_xx(Backend& backend, const float* x, int64_t tokens, int64_t nseq) {
  const Buffer<float> product = backend.alloc<float>(static_cast<size_t>(n_ * n_), "X^T X of one chunk");
  backend.gemm(Trans::T, Trans::N, n_, n_, tokens, 1.0f, x, n_, x, n_, 0.0f, product.data(), n_);
  const float* chunk = on_host(backend, product, staging_);
  for (size_t i = 0; i < xx_.size(); ++i) xx_[i] += chunk[i];
  tokens_ += tokens;
  nseq_ += nseq;
}

void LinearStats::accumulate(Backend& backend, const float* x, const float* x_fp, int64_t tokens, int64_t nseq) {
  if (tokens_ > 0 && dxx_.empty())
    throw InternalError("LinearStats: cross term requested after chunks without one");
  if (dxx_.empty()) dxx_.assign(static_cast<size_t>(n_ * n_), 0.0);
  // dX = x_fp - x on the backend: one correctly rounded float subtraction
  // per element, the bytes the host loop gave.
  Buffer<float> diff = backend.alloc<float>(static_cast<size_t>(tokens * n_), "dX of one chunk");
  backend.subtract(x_fp, x, diff.data(), tokens * n_);
  const Buffer<float> product = backend.alloc<float>(static_cast<size_t>(n_ * n_), "dX^T X of one chunk");
  backend.gemm(Trans::T, Trans::N, n_, n_, tokens, 1.0f, diff.data(), n_, x, n_, 0.0f, product.data(), n_);
  const float* chunk = on_host(backend, product, staging_);
  for (size_t i = 0; i < dxx_.size(); ++i) dxx_[i] += chunk[i];
  add_xx(backend, x, tokens, nseq);
}

void LinearStats::accumulate_residual(Backend& backend, const float* r, const float* x, int64_t tokens,
                                      int64_t out) {
  if (res_.empty()) {
    out_ = out;
    res_.assign(static_cast<size_t>(out * n_), 0.0);
  }
  if (out != out_) throw InternalError("LinearStats: residual width changed between chunks");
  const Buffer<float> product = backend.alloc<float>(static_cast<size_t>(out * n_), "r^T x of one chunk");
  backend.gemm(Trans::T, Trans::N, out, n_, tokens, 1.0f, r, out, x, n_, 0.0f, product.data(), n_);
  const float* prod = on_host(backend, product, staging_);
  for (size_t i = 0; i < res_.size(); ++i) res_[i] += prod[i];
}

std::vector<double> LinearStats::residual() const {
  std::vector<double> e(res_);
  const double scale = nseq_ > 0 ? 2.0 / static_cast<double>(nseq_) : 1.0;
  for (double& v : e) v *= scale;
  return e;
}

std::vector<double> LinearStats::cross() const {
  std::vector<double> d(dxx_);
  const double scale = nseq_ > 0 ? 2.0 / static_cast<double>(nseq_) : 1.0;
  for (double& v : d) v *= scale;
  return d;
}

std::vector<double> LinearStats::hessian() const {
  std::vector<double> h(xx_);
  const double scale = nseq_ > 0 ? 2.0 / static_cast<double>(nseq_) : 1.0;
  for (double& v : h) v *= scale;
  return h;
}

}  // namespace streamq
