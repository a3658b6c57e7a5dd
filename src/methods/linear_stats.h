// Second-order statistics of one linear input shared by the linears that read
// it (q,k,v; gate,up): accumulated chunk by chunk, in a fixed order.
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

class Backend;

class LinearStats {
 public:
  explicit LinearStats(int64_t in_features);
  // Adds X^T X for a chunk x[tokens, in] (in the backend's memory) holding
  // `nseq` whole sequences. The chunk product runs in float32 on the backend
  // (as the GPU will), in a buffer of that backend, and is summed into a
  // float64 accumulator, so chunk order is the only order that matters and it
  // is fixed by the caller.
  void accumulate(Backend& backend, const float* x, int64_t tokens, int64_t nseq);
  // Also adds the cross term (X~ - X)^T X from the FP flow's input x_fp of the
  // same tokens (token-aligned with x, in the backend's memory too).
  void accumulate(Backend& backend, const float* x, const float* x_fp, int64_t tokens, int64_t nseq);
  bool has_cross() const { return !dxx_.empty(); }
  // LoaQ's residual term for an output projection: E += r^T x for a chunk of
  // residual differences r[tokens, out] and the (rescaled) inputs x[tokens, in].
  void accumulate_residual(Backend& backend, const float* r, const float* x, int64_t tokens, int64_t out);
  bool has_residual() const { return !res_.empty(); }
  // E with hessian()'s scale, [out, in].
  std::vector<double> residual() const;

  int64_t in_features() const { return n_; }
  int64_t tokens() const { return tokens_; }
  int64_t sequences() const { return nseq_; }
  // Raw sum over tokens of x x^T, [in, in].
  const std::vector<double>& xx_sum() const { return xx_; }
  // The Hessian as GPTQ's code scales it: 2 / nsamples * sum x x^T (nsamples
  // counts sequences). The scale matters only through the dead-input rule.
  std::vector<double> hessian() const;
  // dX X^T with the same scale as hessian() ([in, in]; row index is dX's feature).
  std::vector<double> cross() const;

 private:
  void add_xx(Backend& backend, const float* x, int64_t tokens, int64_t nseq);
  int64_t n_;
  int64_t tokens_ = 0;
  int64_t nseq_ = 0;
  std::vector<double> xx_;
  std::vector<double> dxx_;   // empty until a cross term is accumulated
  std::vector<double> res_;   // [out, in], empty unless LoaQ's residual term is accumulated
  int64_t out_ = 0;
  std::vector<float> staging_;  // a chunk product downloaded from a device backend
};

}  // namespace streamq
