// See adam.h.
#include "src/methods/adam.h"

#include <cmath>
#include <string>

#include "src/core/error.h"

namespace streamq {

Adam::Adam(AdamConfig cfg, int64_t n) : cfg_(cfg), n_(n) {
  if (n < 0) throw InputError("Adam: parameter count " + std::to_string(n) + " < 0");
  const auto bad = [](double v) { return !(v >= 0) || !std::isfinite(v); };
  if (bad(cfg.lr)) throw InputError("Adam: lr " + std::to_string(cfg.lr) + " must be finite and >= 0");
  if (bad(cfg.eps)) throw InputError("Adam: eps " + std::to_string(cfg.eps) + " must be finite and >= 0");
  if (bad(cfg.weight_decay))
    throw InputError("Adam: weight_decay " + std::to_string(cfg.weight_decay) + " must be finite and >= 0");
  if (!(cfg.beta1 >= 0 && cfg.beta1 < 1)) throw InputError("Adam: beta1 " + std::to_string(cfg.beta1) + " not in [0, 1)");
  if (!(cfg.beta2 >= 0 && cfg.beta2 < 1)) throw InputError("Adam: beta2 " + std::to_string(cfg.beta2) + " not in [0, 1)");
  m_.assign(static_cast<size_t>(n), 0.0f);
  v_.assign(static_cast<size_t>(n), 0.0f);
}

void Adam::step(float* params, const float* grad) {
  ++t_;
  // Bias corrections in float64 (b2^t stays far from 1 - 2^-24 issues for
  // long runs), folded into one step size and one eps as PyTorch does:
  // lr * mhat / (sqrt(vhat) + eps) = (lr / c1) * m / (sqrt(v) / sqrt(c2) + eps).
  const double c1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t_));
  const double c2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t_));
  const float step_size = static_cast<float>(cfg_.lr / c1);
  const float inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(c2));
  const float b1 = static_cast<float>(cfg_.beta1), b2 = static_cast<float>(cfg_.beta2);
  const float one_b1 = static_cast<float>(1.0 - cfg_.beta1), one_b2 = static_cast<float>(1.0 - cfg_.beta2);
  const float eps = static_cast<float>(cfg_.eps);
  const float decay = static_cast<float>(1.0 - cfg_.lr * cfg_.weight_decay);
  const bool decays = cfg_.weight_decay > 0;
  for (int64_t i = 0; i < n_; ++i) {
    const float g = grad[i];
    float p = params[i];
    if (decays) p *= decay;
    const float m = b1 * m_[i] + one_b1 * g;
    const float v = b2 * v_[i] + one_b2 * g * g;
    m_[i] = m;
    v_[i] = v;
    params[i] = p - step_size * m / (std::sqrt(v) * inv_sqrt_c2 + eps);
  }
}

}  // namespace streamq
