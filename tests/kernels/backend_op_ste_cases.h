// The op-table rows of the straight-through estimator's ops (SDE training,
// issue 18): fake_quant_ste and ste_mask_grad against the float64 formula
// of their contract (kernels/backend.h). Both are exact by contract (every
// float64 step correctly rounded), so the error is the count of elements
// whose bits differ and the tolerance 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/backend_op_cases.h"
#include "tests/support/backend_test_util.h"

namespace streamq::test {

class FakeQuantSteCase final : public OpCase {
 public:
  FakeQuantSteCase(int64_t rows, int64_t cols, int64_t group, int32_t maxq, bool free_min)
      : rows_(rows), cols_(cols), group_(group), maxq_(maxq), free_min_(free_min) {}
  Op op() const override { return Op::FakeQuantSte; }
  std::string shape() const override {
    return "rows=" + std::to_string(rows_) + " cols=" + std::to_string(cols_) + " group=" + std::to_string(group_) +
           " maxq=" + std::to_string(maxq_) + (free_min_ ? " free-min" : "");
  }
  Tolerance tolerance() const override {
    return {0.0, "the contract is float64 division, round half to even, an add and a clamp, one rounded product "
                 "(and sum) and a narrowing to float: one right answer per element (error = elements whose value "
                 "or mask bits differ)"};
  }
  void prepare(std::mt19937_64& rng) override {
    const int64_t groups = (cols_ + group_ - 1) / group_;
    w_ = random_normal<float>(rng, rows_ * cols_, 0.1);
    params_.resize(static_cast<size_t>(rows_ * groups * 2));
    std::uniform_real_distribution<double> scale(0.005, 0.05);
    std::uniform_int_distribution<int32_t> zero(0, maxq_);
    for (int64_t g = 0; g < rows_ * groups; ++g) {
      // fp16-like scales (11 significant bits) as GridParams hold them.
      params_[2 * g] = std::ldexp(std::round(std::ldexp(scale(rng), 17)), -17);
      params_[2 * g + 1] = free_min_ ? -static_cast<double>(static_cast<float>(scale(rng) * maxq_ / 2))
                                     : static_cast<double>(zero(rng));
    }
    // Ties at half a step (scale a power of two, so x / scale is exact):
    // round half to even decides them; values beyond both ends (the mask's
    // zeros); a NaN (clamped to code 0, mask 0).
    if (rows_ * cols_ >= 8) {
      params_[0] = 0.25;
      const float ties[] = {0.125f, 0.375f, -0.125f, -0.375f, 1e3f, -1e3f, std::numeric_limits<float>::quiet_NaN()};
      for (size_t i = 0; i < std::size(ties) && static_cast<int64_t>(i) < std::min(cols_, group_); ++i) w_[i] = ties[i];
    }
    want_q_.resize(w_.size());
    want_mask_.resize(w_.size());
    for (int64_t r = 0; r < rows_; ++r)
      for (int64_t c = 0; c < cols_; ++c) {
        const size_t i = static_cast<size_t>(r * cols_ + c);
        const double s = params_[2 * (r * groups + c / group_)], z = params_[2 * (r * groups + c / group_) + 1];
        const double x = w_[i];
        const double u = free_min_ ? std::nearbyint((x - z) / s) : std::nearbyint(x / s) + z;
        double code = u;
        if (!(code >= 0)) code = 0;  // below the grid, or NaN
        if (code > maxq_) code = maxq_;
        const double prod = free_min_ ? s * code : s * (code - z);  // separate statements: no contraction
        want_q_[i] = static_cast<float>(free_min_ ? prod + z : prod);
        want_mask_[i] = u >= 0 && u <= maxq_ ? 1 : 0;
      }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> w(be, w_), wq(be, w_.size());
    const GuardedBuffer<double> params(be, params_);
    const GuardedBuffer<uint8_t> mask(be, w_.size());
    be.fake_quant_ste(w.get(), rows_, cols_, group_, params.get(), maxq_, free_min_, wq.get(), mask.get());
    Outcome o;
    const std::vector<float> got_q = wq.download("fake_quant_ste wq", &o.defect);
    const std::vector<uint8_t> got_mask = mask.download("fake_quant_ste mask", &o.defect);
    w.download("fake_quant_ste w", &o.defect);  // guards only
    int64_t wrong = 0;
    for (size_t i = 0; i < w_.size(); ++i)
      wrong += !bitwise_equal(std::vector<float>{got_q[i]}, std::vector<float>{want_q_[i]}) ||
               got_mask[i] != want_mask_[i];
    o.error = static_cast<double>(wrong);
    return o;
  }

 private:
  int64_t rows_, cols_, group_;
  int32_t maxq_;
  bool free_min_;
  std::vector<float> w_, want_q_;
  std::vector<double> params_;
  std::vector<uint8_t> want_mask_;
};

class SteMaskGradCase final : public OpCase {
 public:
  explicit SteMaskGradCase(int64_t n) : n_(n) {}
  Op op() const override { return Op::SteMaskGrad; }
  std::string shape() const override { return "n=" + std::to_string(n_); }
  Tolerance tolerance() const override {
    return {0.0, "a select, no arithmetic: masked elements +0, the rest their own bits (NaN included)"};
  }
  void prepare(std::mt19937_64& rng) override {
    g_ = random_normal<float>(rng, n_);
    if (n_ > 2) g_[0] = std::numeric_limits<float>::quiet_NaN(), g_[1] = -0.0f;
    std::bernoulli_distribution keep(0.7);
    mask_.resize(static_cast<size_t>(n_));
    for (auto& m : mask_) m = keep(rng) ? 1 : 0;
    if (n_ > 2) mask_[0] = 1, mask_[1] = 1;
    want_ = g_;
    for (size_t i = 0; i < want_.size(); ++i)
      if (!mask_[i]) want_[i] = 0.0f;
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<uint8_t> mask(be, mask_);
    const GuardedBuffer<float> g(be, g_);
    be.ste_mask_grad(mask.get(), g.get(), n_);
    Outcome o;
    const std::vector<float> got = g.download("ste_mask_grad g", &o.defect);
    mask.download("ste_mask_grad mask", &o.defect);
    int64_t wrong = 0;
    for (size_t i = 0; i < got.size(); ++i)
      wrong += !bitwise_equal(std::vector<float>{got[i]}, std::vector<float>{want_[i]});
    o.error = static_cast<double>(wrong);
    return o;
  }

 private:
  int64_t n_;
  std::vector<float> g_, want_;
  std::vector<uint8_t> mask_;
};

}  // namespace streamq::test
