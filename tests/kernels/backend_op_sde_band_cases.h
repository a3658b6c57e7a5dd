// The op-table rows of SDE's banded ops (issue 18): sde_banded_product and
// sde_band_grad against their contracts' operation order replayed on the
// host (kernels/backend.h states it: float products and sums in a fixed
// order, or float64 partial sums of exact products). The contract fixes
// every rounding, so the error is the count of elements whose bits differ
// and the tolerance 0; what the order computes (U D Vt = W', the band of
// U^T dW' V against finite differences) is tests/methods/test_sde.cpp's.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/backend_op_cases.h"
#include "tests/support/backend_test_util.h"

namespace streamq::test {

// Elements of a and b whose bits differ (sizes equal).
inline int64_t bits_differing(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += !bitwise_equal(std::vector<float>{a[i]}, std::vector<float>{b[i]});
  return n;
}

class SdeBandedProductCase final : public OpCase {
 public:
  SdeBandedProductCase(int64_t rows, int64_t rank, int64_t band) : rows_(rows), rank_(rank), band_(band) {}
  Op op() const override { return Op::SdeBandedProduct; }
  std::string shape() const override {
    return "rows=" + std::to_string(rows_) + " rank=" + std::to_string(rank_) + " band=" + std::to_string(band_);
  }
  Tolerance tolerance() const override {
    return {0.0, "the contract fixes each float product and sum and their order: one right answer per element"};
  }
  void prepare(std::mt19937_64& rng) override {
    u_ = random_normal<float>(rng, rows_ * rank_);
    s_ = random_normal<float>(rng, rank_);
    p_ = random_normal<float>(rng, (2 * band_ + 1) * rank_, 0.1);
    want_.resize(u_.size());
    for (int64_t a = 0; a < rows_; ++a)
      for (int64_t c = 0; c < rank_; ++c) {
        const float* ua = u_.data() + a * rank_;
        const float diag = s_[c] + p_[c];
        float acc = ua[c] * diag;
        for (int64_t i = 1; i <= band_; ++i) {
          if (c >= i) {
            const float t = ua[c - i] * p_[(2 * i - 1) * rank_ + (c - i)];
            acc = acc + t;
          }
          if (c + i < rank_) {
            const float t = ua[c + i] * p_[2 * i * rank_ + c];
            acc = acc + t;
          }
        }
        want_[a * rank_ + c] = acc;
      }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> u(be, u_), s(be, s_), p(be, p_), ud(be, u_.size());
    be.sde_banded_product(u.get(), s.get(), p.get(), rows_, rank_, band_, ud.get());
    Outcome o;
    const std::vector<float> got = ud.download("sde_banded_product ud", &o.defect);
    o.error = static_cast<double>(bits_differing(got, want_));
    return o;
  }

 private:
  int64_t rows_, rank_, band_;
  std::vector<float> u_, s_, p_, want_;
};

class SdeBandGradCase final : public OpCase {
 public:
  SdeBandGradCase(int64_t rank, int64_t cols, int64_t band) : rank_(rank), cols_(cols), band_(band) {}
  Op op() const override { return Op::SdeBandGrad; }
  std::string shape() const override {
    return "rank=" + std::to_string(rank_) + " cols=" + std::to_string(cols_) + " band=" + std::to_string(band_);
  }
  Tolerance tolerance() const override {
    return {0.0, "float products are exact in float64 and the contract fixes the partial sums' order: one right "
                 "answer per entry"};
  }
  void prepare(std::mt19937_64& rng) override {
    m_ = random_normal<float>(rng, rank_ * cols_);
    vt_ = random_normal<float>(rng, rank_ * cols_);
    auto dot = [&](int64_t a, int64_t b) {  // m's row a, vt's row b
      double acc[4] = {0, 0, 0, 0};
      for (int64_t k = 0; k < cols_; ++k) {
        const int lane = k < cols_ / 4 * 4 ? static_cast<int>(k % 4) : 0;
        acc[lane] += static_cast<double>(m_[a * cols_ + k]) * vt_[b * cols_ + k];
      }
      return static_cast<float>((acc[0] + acc[1]) + (acc[2] + acc[3]));
    };
    want_.assign(static_cast<size_t>((2 * band_ + 1) * rank_), 0.0f);
    for (int64_t j = 0; j < rank_; ++j) {
      want_[j] = dot(j, j);
      for (int64_t i = 1; i <= band_ && j + i < rank_; ++i) {
        want_[(2 * i - 1) * rank_ + j] = dot(j, j + i);
        want_[2 * i * rank_ + j] = dot(j + i, j);
      }
    }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> m(be, m_), vt(be, vt_), dp(be, want_.size());
    be.sde_band_grad(m.get(), vt.get(), rank_, cols_, band_, dp.get());
    Outcome o;
    const std::vector<float> got = dp.download("sde_band_grad dparams", &o.defect);
    o.error = static_cast<double>(bits_differing(got, want_));
    return o;
  }

 private:
  int64_t rank_, cols_, band_;
  std::vector<float> m_, vt_, want_;
};

}  // namespace streamq::test
