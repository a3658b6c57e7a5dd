// Adam (Kingma & Ba, with bias correction) over one flat float32 parameter
// array, decoupled weight decay as AdamW (Loshchilov & Hutter, PyTorch's
// AdamW order) when weight_decay > 0: what trains SDE's band (sde.h).
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

// lr 2.5e-4: the SDE/LSI papers' learning rate.
struct AdamConfig {
  double lr = 2.5e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class Adam {
 public:
  // State m, v (float32) zeroed, step 0. InputError for n < 0 or a
  // hyperparameter out of range (lr, eps, weight_decay >= 0; betas in [0, 1)).
  Adam(AdamConfig cfg, int64_t n);
  // One update of the n params from grad [n], bias-corrected:
  //   p -= lr * wd * p                  (AdamW's decoupled decay, before the step)
  //   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2
  //   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
  void step(float* params /*[n]*/, const float* grad /*[n]*/);
  int64_t steps() const { return t_; }
  int64_t size() const { return n_; }
  const AdamConfig& config() const { return cfg_; }

 private:
  AdamConfig cfg_;
  int64_t n_;
  int64_t t_ = 0;
  std::vector<float> m_, v_;
};

}  // namespace streamq
