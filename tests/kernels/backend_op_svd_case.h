// The SVD row of the backend op table (Backend::svd, issue 18's SDE): a
// matrix built from known orthonormal factors and singular values, so the
// reference singular values are known; the factors themselves are unique
// only up to signs, so the case measures what every correct SVD shares.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/backend_op_cases.h"

namespace streamq::test {

class SvdCase final : public OpCase {
 public:
  SvdCase(int64_t m, int64_t n) : m_(m), n_(n), r_(std::min(m, n)) {}
  Op op() const override { return Op::Svd; }
  std::string shape() const override { return "m=" + std::to_string(m_) + " n=" + std::to_string(n_); }
  Tolerance tolerance() const override {
    return {1e-11,
            "a backward-stable SVD: ||a - u s vt||, ||u^T u - I||, ||vt vt^T - I|| and |s - s_ref| within "
            "p(m, n) eps64 ||a|| with p a small multiple of max(m, n) <= 300 here (~7e-12 at 10 max(m, n)); "
            "s_ref is exact for the float64-rounded input up to eps64 ||a||"};
  }
  void prepare(std::mt19937_64& rng) override {
    // a = Q1 diag(s) Q2^T, Q1 [m, r] and Q2 [n, r] orthonormal (Gram-Schmidt
    // in long double), s spread over [0.5, 2] and distinct.
    const std::vector<long double> q1 = orthonormal_columns(rng, m_), q2 = orthonormal_columns(rng, n_);
    s_ref_.resize(static_cast<size_t>(r_));
    for (int64_t i = 0; i < r_; ++i) s_ref_[i] = 2.0 * std::pow(0.25, static_cast<double>(i) / std::max<int64_t>(1, r_));
    a_.assign(static_cast<size_t>(m_ * n_), 0.0);
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t j = 0; j < n_; ++j) {
        long double acc = 0;
        for (int64_t k = 0; k < r_; ++k) acc += q1[i * r_ + k] * static_cast<long double>(s_ref_[k]) * q2[j * r_ + k];
        a_[i * n_ + j] = static_cast<double>(acc);
      }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<double> a(be, a_), s(be, static_cast<size_t>(r_)), u(be, static_cast<size_t>(m_ * r_)),
        vt(be, static_cast<size_t>(r_ * n_));
    be.svd(a.get(), m_, n_, s.get(), u.get(), vt.get());
    Outcome o;
    const std::vector<double> gs = s.download("svd s", &o.defect), gu = u.download("svd u", &o.defect),
                              gvt = vt.download("svd vt", &o.defect);
    // Every measure relative to ||a||_2 = s_ref[0] = 2 (errors of unit-norm
    // factors are relative already).
    double err = 0;
    for (int64_t i = 0; i < r_; ++i) err = std::max(err, std::fabs(gs[i] - s_ref_[i]) / s_ref_[0]);
    for (int64_t i = 0; i + 1 < r_; ++i)
      if (gs[i] < gs[i + 1]) o.defect = first_defect(o.defect, "s is not descending");
    double rec = 0, norm = 0;
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t j = 0; j < n_; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < r_; ++k) acc += gu[i * r_ + k] * gs[k] * gvt[k * n_ + j];
        rec += (acc - a_[i * n_ + j]) * (acc - a_[i * n_ + j]);
        norm += a_[i * n_ + j] * a_[i * n_ + j];
      }
    err = std::max(err, std::sqrt(rec / norm));
    for (int64_t p = 0; p < r_; ++p)
      for (int64_t q = 0; q < r_; ++q) {
        double uu = 0, vv = 0;
        for (int64_t i = 0; i < m_; ++i) uu += gu[i * r_ + p] * gu[i * r_ + q];
        for (int64_t j = 0; j < n_; ++j) vv += gvt[p * n_ + j] * gvt[q * n_ + j];
        const double id = p == q ? 1.0 : 0.0;
        err = std::max({err, std::fabs(uu - id), std::fabs(vv - id)});
      }
    o.error = err;  // NaN (an unwritten, poisoned element) fails the bound
    for (double v : gs)
      if (std::isnan(v)) o.error = v;
    return o;
  }

 private:
  // [rows, r_] with orthonormal columns, from a Gaussian by modified Gram-Schmidt, twice.
  std::vector<long double> orthonormal_columns(std::mt19937_64& rng, int64_t rows) const {
    std::normal_distribution<double> nd;
    std::vector<long double> q(static_cast<size_t>(rows * r_));
    for (auto& v : q) v = nd(rng);
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t k = 0; k < r_; ++k) {
        for (int64_t p = 0; p < k; ++p) {
          long double dot = 0;
          for (int64_t i = 0; i < rows; ++i) dot += q[i * r_ + p] * q[i * r_ + k];
          for (int64_t i = 0; i < rows; ++i) q[i * r_ + k] -= dot * q[i * r_ + p];
        }
        long double nrm = 0;
        for (int64_t i = 0; i < rows; ++i) nrm += q[i * r_ + k] * q[i * r_ + k];
        nrm = std::sqrt(nrm);
        for (int64_t i = 0; i < rows; ++i) q[i * r_ + k] /= nrm;
      }
    return q;
  }
  int64_t m_, n_, r_;
  std::vector<double> a_, s_ref_;
};

}  // namespace streamq::test
