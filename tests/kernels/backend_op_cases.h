// The rows of the backend op table (tests/kernels/test_backend_ops.cpp), in
// the style of llama.cpp's test-backend-ops: each case is one op on one
// shape with its tolerance and the reason for it. prepare() draws the inputs
// and the float64 reference once; run() executes the op on a backend through
// the Backend interface alone (guarded, poisoned buffers in that backend's
// memory) and measures the error against the reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.h"
#include "src/core/dtype.h"
#include "tests/support/attention_reference.h"
#include "tests/support/backend_test_util.h"
#include "tests/support/rope_reference.h"

namespace streamq::test {

// A bound on a case's error metric and why it is that bound.
struct Tolerance {
  double max_error = 0;
  std::string reason;
};

// What one run of a case on one backend found: the error metric (NaN when an
// output element was left unwritten) and any structural defect (a guard or
// padding written, a triangle not zeroed, aliasing that changed the bits).
struct Outcome {
  double error = 0;
  std::string defect;
};

class OpCase {
 public:
  virtual ~OpCase() = default;
  virtual Op op() const = 0;
  virtual std::string shape() const = 0;
  virtual Tolerance tolerance() const = 0;
  // Draws the inputs and computes the float64 reference; once per case,
  // before any backend runs it, so every backend sees the same inputs.
  virtual void prepare(std::mt19937_64& rng) = 0;
  // Throws what the op throws (InternalError where it is unsupported).
  virtual Outcome run(Backend& be) = 0;
};

inline std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

inline std::string first_defect(const std::string& a, const std::string& b) { return a.empty() ? b : a; }

// The shape() of the rope and attention rows, forward and backward.
inline std::string rope_shape(int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim) {
  return "nseq=" + std::to_string(nseq) + " seqlen=" + std::to_string(seqlen) + " nheads=" + std::to_string(nheads) +
         " head_dim=" + std::to_string(head_dim);
}
inline std::string attention_shape(const AttentionCase& c) {
  return "nseq=" + std::to_string(c.nseq) + " seqlen=" + std::to_string(c.seqlen) + " nheads=" +
         std::to_string(c.nheads) + " nkv=" + std::to_string(c.nkv) + " head_dim=" + std::to_string(c.hd);
}

// ---------------------------------------------------------------- GEMM

template <typename T>
class GemmCase final : public OpCase {
 public:
  GemmCase(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T beta)
      : ta_(ta), tb_(tb), m_(m), n_(n), k_(k), beta_(beta) {}
  Op op() const override { return sizeof(T) == 4 ? Op::GemmF32 : Op::GemmF64; }
  std::string shape() const override {
    return std::string("ta=") + (ta_ == Trans::N ? "N" : "T") + " tb=" + (tb_ == Trans::N ? "N" : "T") +
           " m=" + std::to_string(m_) + " n=" + std::to_string(n_) + " k=" + std::to_string(k_) +
           " beta=" + std::to_string(double(beta_));
  }
  Tolerance tolerance() const override {
    return {double(k_ + 2) * std::numeric_limits<T>::epsilon(),
            "Higham: a k-term dot product errs by <= (k+2)u |alpha||op(A)||op(B)| with u = eps/2 (the error is "
            "normalized by that magnitude plus |beta C|, the result may cancel); (k+2)eps also covers "
            "summations that round toward zero (tensor-core accumulation)"};
  }
  void prepare(std::mt19937_64& rng) override { g_ = random_padded_gemm(rng, ta_, tb_, m_, n_, k_, beta_); }
  Outcome run(Backend& be) override {
    const GuardedBuffer<T> a(be, g_.a), b(be, g_.b), c(be, g_.c);
    be.gemm(ta_, tb_, m_, n_, k_, g_.alpha, a.get(), g_.lda, b.get(), g_.ldb, beta_, c.get(), g_.ldc);
    Outcome o;
    const std::vector<T> out = c.download("gemm C", &o.defect);
    const testing::AssertionResult pad = g_.padding_untouched(out);
    if (!pad) o.defect = first_defect(o.defect, pad.message());
    o.error = relative_error(g_.dense(out).data(), g_.ref.data(), g_.mag.data(), m_ * n_);
    return o;
  }

 private:
  Trans ta_, tb_;
  int64_t m_, n_, k_;
  T beta_;
  PaddedGemm<T> g_;
};

// h[n,n] = beta h + x^T x for bf16 x.
class GramCase final : public OpCase {
 public:
  GramCase(int64_t n, int64_t tokens, float beta) : n_(n), tokens_(tokens), beta_(beta) {}
  Op op() const override { return Op::GramBf16; }
  std::string shape() const override {
    return "n=" + std::to_string(n_) + " tokens=" + std::to_string(tokens_) + " beta=" + std::to_string(beta_);
  }
  Tolerance tolerance() const override {
    return {double(tokens_ + 2) * kF32Eps,
            "bf16 x bf16 products are exact in float: only the float sum of `tokens` terms rounds, Higham's "
            "(k+2)u bound with 2x slack, normalized by the sum of |products| plus |beta h|"};
  }
  void prepare(std::mt19937_64& rng) override {
    std::normal_distribution<float> normal(0.0f, 2.0f);
    bits_.resize(static_cast<size_t>(tokens_ * n_));
    std::vector<float> values(bits_.size());
    for (size_t i = 0; i < bits_.size(); ++i) {
      bits_[i] = f32_to_bf16(normal(rng));
      values[i] = bf16_to_f32(bits_[i]);
    }
    // beta == 0: h starts as NaN and must be overwritten without being read.
    h0_ = beta_ == 0.0f ? poisoned<float>(n_ * n_) : random_normal<float>(rng, n_ * n_, 10.0);
    ref_.assign(static_cast<size_t>(n_ * n_), 0.0);
    mag_.assign(ref_.size(), 0.0);
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t j = 0; j < n_; ++j) {
        double sum = 0.0, sum_abs = 0.0;
        for (int64_t t = 0; t < tokens_; ++t) {
          const double p = double(values[t * n_ + i]) * values[t * n_ + j];
          sum += p;
          sum_abs += std::abs(p);
        }
        const double prior = beta_ == 0.0f ? 0.0 : double(beta_) * h0_[i * n_ + j];
        ref_[i * n_ + j] = sum + prior;
        mag_[i * n_ + j] = sum_abs + std::abs(prior);
      }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<uint16_t> x(be, bits_);
    const GuardedBuffer<float> h(be, h0_);
    be.gram_bf16_accumulate(x.get(), n_, tokens_, h.get(), beta_);
    Outcome o;
    const std::vector<float> got = h.download("gram h", &o.defect);
    // No tokens and beta == 0: the exact h is 0 and so is its magnitude, where
    // the relative error is 0/0 = NaN. Then h must be exactly 0 (the poison
    // overwritten, nothing invented): error 0 when it is, infinite otherwise.
    if (tokens_ == 0 && beta_ == 0.0f) {
      o.error = std::all_of(got.begin(), got.end(), [](float v) { return v == 0.0f; }) ? 0.0 : INFINITY;
      return o;
    }
    o.error = relative_error(got.data(), ref_.data(), mag_.data(), n_ * n_);
    return o;
  }

 private:
  int64_t n_, tokens_;
  float beta_;
  std::vector<uint16_t> bits_;
  std::vector<float> h0_;
  std::vector<double> ref_, mag_;
};

// ---------------------------------------------------------------- factorizations

// H = B B^T / n + I: eigenvalues in [1, 5], so every factor is well conditioned.
inline std::vector<double> random_spd(std::mt19937_64& rng, int64_t n) {
  const std::vector<double> b = random_normal<double>(rng, n * n);
  std::vector<double> h(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < n; ++p) s += b[i * n + p] * b[j * n + p];
      h[i * n + j] = h[j * n + i] = s / double(n) + (i == j ? 1.0 : 0.0);
    }
  return h;
}

// The references in long double (64-bit significand on x86): their own
// rounding is ~2^11 times below the tolerances, so they stand for exact.
using Exact = long double;

inline std::vector<Exact> exact_cholesky_lower(const std::vector<Exact>& a, int64_t n) {
  std::vector<Exact> l(static_cast<size_t>(n * n), 0.0L);
  for (int64_t j = 0; j < n; ++j) {
    Exact d = a[j * n + j];
    for (int64_t p = 0; p < j; ++p) d -= l[j * n + p] * l[j * n + p];
    l[j * n + j] = std::sqrt(d);
    for (int64_t i = j + 1; i < n; ++i) {
      Exact s = a[i * n + j];
      for (int64_t p = 0; p < j; ++p) s -= l[i * n + p] * l[j * n + p];
      l[i * n + j] = s / l[j * n + j];
    }
  }
  return l;
}

inline std::vector<Exact> exact_invert_lower(const std::vector<Exact>& l, int64_t n) {
  std::vector<Exact> inv(static_cast<size_t>(n * n), 0.0L);
  for (int64_t j = 0; j < n; ++j) {
    inv[j * n + j] = 1.0L / l[j * n + j];
    for (int64_t i = j + 1; i < n; ++i) {
      Exact s = 0.0L;
      for (int64_t p = j; p < i; ++p) s += l[i * n + p] * inv[p * n + j];
      inv[i * n + j] = -s / l[i * n + i];
    }
  }
  return inv;
}

template <typename From>
std::vector<Exact> to_exact(const std::vector<From>& v) { return {v.begin(), v.end()}; }
inline std::vector<double> to_double(const std::vector<Exact>& v) { return {v.begin(), v.end()}; }

inline std::string strict_triangle_defect(const std::vector<double>& a, int64_t n, bool upper, const char* what) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = upper ? i + 1 : 0; j < (upper ? n : i); ++j)
      if (a[i * n + j] != 0.0)
        return std::string(what) + ": strict " + (upper ? "upper" : "lower") + " triangle not zero at (" +
               std::to_string(i) + ", " + std::to_string(j) + ")";
  return "";
}

// Shared by the three factorizations.
inline Tolerance factor_tolerance(int64_t n) {
  return {50.0 * double(n) * kF64Eps,
          "eigenvalues of H in [1, 5]: a backward-stable factorization (LAPACK, cuSOLVER) is within ~n eps cond(H) "
          "= 5 n eps of the exact factor; 10x slack on top"};
}

enum class FactorOp { Cholesky, InvertLower, InverseUpper, InverseUpperF32 };

class FactorCase final : public OpCase {
 public:
  FactorCase(FactorOp which, int64_t n) : which_(which), n_(n) {}
  Op op() const override {
    return which_ == FactorOp::Cholesky          ? Op::CholeskyLower
           : which_ == FactorOp::InvertLower     ? Op::InvertLowerTriangular
           : which_ == FactorOp::InverseUpperF32 ? Op::InverseUpperFactorF32
                                                 : Op::InverseUpperFactor;
  }
  std::string shape() const override { return "n=" + std::to_string(n_); }
  Tolerance tolerance() const override {
    if (which_ != FactorOp::InverseUpperF32) return factor_tolerance(n_);
    return {50.0 * double(n_) * kF32Eps,
            "the float64 bound's argument in float32: ~n eps32 cond(H) = 5 n eps32 from the exact factor of the "
            "float input, 10x slack"};
  }
  void prepare(std::mt19937_64& rng) override {
    const int64_t n = n_;
    std::vector<double> h = random_spd(rng, n);
    if (which_ == FactorOp::InverseUpperF32)  // the float input is the problem: the reference is of it exactly
      for (double& v : h) v = static_cast<float>(v);
    if (which_ == FactorOp::Cholesky) {
      input_ = h;
      ref_ = to_double(exact_cholesky_lower(to_exact(h), n));
    } else if (which_ == FactorOp::InvertLower) {
      // A lower factor rounded to double is the input; garbage (NaN) in its
      // strict upper triangle must not reach the result.
      const std::vector<double> l = to_double(exact_cholesky_lower(to_exact(h), n));
      ref_ = to_double(exact_invert_lower(to_exact(l), n));
      input_ = l;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) input_[i * n + j] = std::numeric_limits<double>::quiet_NaN();
    } else {
      // H^-1 = L^-T L^-1, and U = chol_lower(H^-1)^T.
      input_ = h;
      const std::vector<Exact> li = exact_invert_lower(exact_cholesky_lower(to_exact(h), n), n);
      std::vector<Exact> hinv(static_cast<size_t>(n * n), 0.0L);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          Exact s = 0.0L;
          for (int64_t p = std::max(i, j); p < n; ++p) s += li[p * n + i] * li[p * n + j];
          hinv[i * n + j] = s;
        }
      const std::vector<Exact> l2 = exact_cholesky_lower(hinv, n);
      ref_.assign(static_cast<size_t>(n * n), 0.0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) ref_[i * n + j] = static_cast<double>(l2[j * n + i]);
    }
  }
  Outcome run(Backend& be) override {
    if (which_ == FactorOp::InverseUpperF32) {
      const std::vector<float> input(input_.begin(), input_.end());  // outlives the queued upload
      const GuardedBuffer<float> a(be, input);
      Outcome o;
      const bool ok = be.inverse_upper_factor(a.get(), n_);
      const std::vector<float> got32 = a.download(op_name(op()), &o.defect);
      const std::vector<double> got(got32.begin(), got32.end());
      if (!ok) o.defect = first_defect(o.defect, "returned false on a positive definite matrix");
      o.defect = first_defect(o.defect, strict_triangle_defect(got, n_, false, "result"));
      o.error = relative_error(got, ref_);
      return o;
    }
    const GuardedBuffer<double> a(be, input_);
    Outcome o;
    bool ok = true;
    if (which_ == FactorOp::Cholesky) ok = be.cholesky_lower(a.get(), n_);
    if (which_ == FactorOp::InvertLower) be.invert_lower_triangular(a.get(), n_);
    if (which_ == FactorOp::InverseUpper) ok = be.inverse_upper_factor(a.get(), n_);
    const std::vector<double> got = a.download(op_name(op()), &o.defect);
    if (!ok) o.defect = first_defect(o.defect, "returned false on a positive definite matrix");
    o.defect = first_defect(o.defect, strict_triangle_defect(got, n_, which_ != FactorOp::InverseUpper, "result"));
    o.error = relative_error(got, ref_);
    return o;
  }

 private:
  FactorOp which_;
  int64_t n_;
  std::vector<double> input_, ref_;
};

// ---------------------------------------------------------------- row-wise and elementwise

class RmsnormCase final : public OpCase {
 public:
  RmsnormCase(int64_t rows, int64_t dim, float eps) : rows_(rows), dim_(dim), eps_(eps) {}
  Op op() const override { return Op::Rmsnorm; }
  std::string shape() const override {
    return "rows=" + std::to_string(rows_) + " dim=" + std::to_string(dim_) + " eps=" + std::to_string(eps_);
  }
  Tolerance tolerance() const override {
    return {4 * kF32Eps,
            "1/rms rounded once to float after an accurate sum of squares, then two float products: <= 1.5 eps "
            "per element; 4 eps leaves room for a float sum of squares"};
  }
  void prepare(std::mt19937_64& rng) override {
    x_ = random_normal<float>(rng, rows_ * dim_, 3.0);
    for (int64_t i = 0; i < dim_; ++i) x_[i] *= 1e-3f;  // a row near zero makes eps matter
    w_ = random_normal<float>(rng, dim_);
    ref_.resize(x_.size());
    for (int64_t r = 0; r < rows_; ++r) {
      double ss = 0.0;
      for (int64_t i = 0; i < dim_; ++i) ss += double(x_[r * dim_ + i]) * x_[r * dim_ + i];
      const double rms = std::sqrt(ss / double(dim_) + double(eps_));
      for (int64_t i = 0; i < dim_; ++i) ref_[r * dim_ + i] = x_[r * dim_ + i] / rms * w_[i];
    }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> x(be, x_), w(be, w_), y(be, x_.size()), xy(be, x_);
    be.rmsnorm(x.get(), w.get(), y.get(), rows_, dim_, eps_);
    be.rmsnorm(xy.get(), w.get(), xy.get(), rows_, dim_, eps_);  // y may alias x
    Outcome o;
    const std::vector<float> got = y.download("rmsnorm y", &o.defect);
    if (x.download("rmsnorm x", &o.defect) != x_) o.defect = first_defect(o.defect, "input x modified");
    if (!bitwise_equal(xy.download("rmsnorm in place", &o.defect), got))
      o.defect = first_defect(o.defect, "in place (y aliasing x) differs from out of place");
    o.error = relative_error(got, ref_);
    return o;
  }

 private:
  int64_t rows_, dim_;
  float eps_;
  std::vector<float> x_, w_;
  std::vector<double> ref_;
};

class RopeCase final : public OpCase {
 public:
  RopeCase(int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim)
      : nseq_(nseq), seqlen_(seqlen), nheads_(nheads), hd_(head_dim) {}
  Op op() const override { return Op::Rope; }
  std::string shape() const override {
    return rope_shape(nseq_, seqlen_, nheads_, hd_);
  }
  Tolerance tolerance() const override {
    return {4 * kF32Eps,
            "two float products and one sum per element of a norm-preserving rotation: <= 2 ulp of |x| even "
            "where a compiler contracts them into an FMA"};
  }
  void prepare(std::mt19937_64& rng) override {
    // HF's default inverse frequencies (theta 10000), three positions spare.
    max_pos_ = seqlen_ + 3;
    const int64_t half = hd_ / 2;
    HfRopeTable table = hf_rope_table(max_pos_, hd_);
    cos_ = std::move(table.cos);
    sin_ = std::move(table.sin);
    const int64_t width = nheads_ * hd_, rows = nseq_ * seqlen_;
    x_ = random_normal<float>(rng, rows * width);
    ref_.resize(x_.size());
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t h = 0; h < nheads_; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const int64_t lo = row * width + h * hd_ + i, pos = row % seqlen_;
          // Pair (i, i + hd/2) as one complex number, rotated by e^{i angle}.
          const std::complex<double> z(x_[lo], x_[lo + half]);
          const std::complex<double> rot(cos_[pos * half + i], sin_[pos * half + i]);
          ref_[lo] = (z * rot).real();
          ref_[lo + half] = (z * rot).imag();
        }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> c(be, cos_), s(be, sin_), x(be, x_);
    be.rope(x.get(), nseq_, seqlen_, nheads_, hd_, RopeTable{max_pos_, hd_ / 2, c.get(), s.get()});
    Outcome o;
    o.error = relative_error(x.download("rope x", &o.defect), ref_);
    return o;
  }

 private:
  int64_t nseq_, seqlen_, nheads_, hd_, max_pos_ = 0;
  std::vector<float> cos_, sin_, x_;
  std::vector<double> ref_;
};

class AttentionOpCase final : public OpCase {
 public:
  explicit AttentionOpCase(const AttentionCase& c) : c_(c) {}
  Op op() const override { return Op::Attention; }
  std::string shape() const override {
    return attention_shape(c_);
  }
  Tolerance tolerance() const override {
    return {8.0 * std::sqrt(double(c_.hd + c_.seqlen)) * kF32Eps,
            "normalized by sum_j p_j |v_j| (outputs average random-sign values): independent float roundings of "
            "hd-term dots and seqlen-term sums grow like sqrt(terms) (CPU seen ~0.4 eps); 8x covers an online "
            "softmax's expf (2 ulp) and per-tile rescales"};
  }
  void prepare(std::mt19937_64& rng) override {
    in_ = std::make_unique<AttentionInputs>(rng, c_);
    reference_attention(*in_, c_, ref_, mag_);
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> q(be, in_->q), k(be, in_->k), v(be, in_->v), out(be, in_->q.size());
    be.attention(q.get(), k.get(), v.get(), out.get(), c_.nseq, c_.seqlen, c_.nheads, c_.nkv, c_.hd);
    Outcome o;
    const std::vector<float> got = out.download("attention out", &o.defect);
    o.error = relative_error(got.data(), ref_.data(), mag_.data(), static_cast<int64_t>(ref_.size()));
    return o;
  }

 private:
  AttentionCase c_;
  std::unique_ptr<AttentionInputs> in_;
  std::vector<double> ref_, mag_;
};

class SwigluCase final : public OpCase {
 public:
  explicit SwigluCase(int64_t n) : n_(n) {}
  Op op() const override { return Op::Swiglu; }
  std::string shape() const override { return "n=" + std::to_string(n_); }
  Tolerance tolerance() const override {
    return {8 * kF32Eps,
            "expf (<= 1 ulp in glibc, <= 2 ulp in CUDA), then 1 + e, a divide and a product, each <= eps/2"};
  }
  void prepare(std::mt19937_64& rng) override {
    gate_ = random_normal<float>(rng, n_, 4.0);
    up_ = random_normal<float>(rng, n_);
    if (n_ > 2) gate_[0] = -100.0f, gate_[1] = 100.0f;  // exp(-g) overflow and saturation
    ref_.resize(static_cast<size_t>(n_));
    for (int64_t i = 0; i < n_; ++i) ref_[i] = gate_[i] / (1.0 + std::exp(-double(gate_[i]))) * up_[i];
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> gate(be, gate_), up(be, up_), out(be, gate_.size()), g2(be, gate_), u2(be, up_);
    be.swiglu(gate.get(), up.get(), out.get(), n_);
    be.swiglu(g2.get(), up.get(), g2.get(), n_);  // out may alias gate ...
    be.swiglu(gate.get(), u2.get(), u2.get(), n_);  // ... or up
    Outcome o;
    const std::vector<float> got = out.download("swiglu out", &o.defect);
    if (!bitwise_equal(g2.download("swiglu out=gate", &o.defect), got) ||
        !bitwise_equal(u2.download("swiglu out=up", &o.defect), got))
      o.defect = first_defect(o.defect, "aliased output differs from out of place");
    o.error = relative_error(got, ref_);
    return o;
  }

 private:
  int64_t n_;
  std::vector<float> gate_, up_;
  std::vector<double> ref_;
};

// The normalized Hadamard transform of rows (forward or inverse, with or
// without signs) against its float64 definition: the dense Kronecker product
// H_m (x) H_p applied term by term.
class HadamardCase final : public OpCase {
 public:
  HadamardCase(int64_t rows, int64_t m, int64_t p, bool signs, bool inverse)
      : rows_(rows), m_(m), p_(p), n_(m * p), signs_on_(signs), inverse_(inverse) {}
  Op op() const override { return Op::HadamardRows; }
  std::string shape() const override {
    return "rows=" + std::to_string(rows_) + " n=" + std::to_string(n_) + " = " + std::to_string(m_) + " x " +
           std::to_string(p_) + (signs_on_ ? " signs" : "") + (inverse_ ? " inverse" : "");
  }
  Tolerance tolerance() const override {
    const double levels = std::log2(double(p_)) + double(m_) + 2;
    return {2 * levels * kF32Eps,
            "each butterfly level is orthogonal up to sqrt(2) and rounds once (log2 p levels), the H_m mix adds "
            "m terms, then one scale and one sign product: (log2 p + m + 2) eps relative in norm, 2x slack"};
  }
  void prepare(std::mt19937_64& rng) override {
    x_ = random_normal<float>(rng, rows_ * n_);
    hm_ = sylvester_or_paley(m_);
    signs_.clear();
    if (signs_on_)
      for (int64_t i = 0; i < n_; ++i) signs_.push_back((rng() & 1) ? 1.0f : -1.0f);
    ref_.assign(x_.size(), 0.0);
    const double scale = 1.0 / std::sqrt(double(n_));
    for (int64_t r = 0; r < rows_; ++r)
      for (int64_t i = 0; i < n_; ++i) {
        const int64_t a = i / p_, b = i % p_;
        double acc = 0;
        for (int64_t j = 0; j < n_; ++j) {
          const int64_t a2 = j / p_, b2 = j % p_;
          // H_n[i][j] (forward) or H_n[j][i] (inverse); H_p is symmetric.
          const double hmv = inverse_ ? hm_[a2 * m_ + a] : hm_[a * m_ + a2];
          const double hp = (__builtin_popcountll(static_cast<uint64_t>(b & b2)) & 1) ? -1.0 : 1.0;
          const double sj = signs_on_ && !inverse_ ? signs_[j] : 1.0;
          acc += hmv * hp * sj * x_[r * n_ + j];
        }
        ref_[r * n_ + i] = acc * scale * (signs_on_ && inverse_ ? signs_[i] : 1.0);
      }
  }
  Outcome run(Backend& be) override {
    const std::vector<float> one = {1.0f};
    const GuardedBuffer<float> x(be, x_), hm(be, hm_), signs(be, signs_on_ ? signs_ : one);
    be.hadamard_rows(x.get(), rows_, n_, hm.get(), m_, signs_on_ ? signs.get() : nullptr, inverse_);
    Outcome o;
    o.error = relative_error(x.download("hadamard_rows x", &o.defect), ref_);
    return o;
  }

 private:
  // H_m as +-1 floats for the orders the cases use (1, 2, 4 by Sylvester; 12
  // and 20 by Paley I, q = 11 and 19): the test's own construction.
  static std::vector<float> sylvester_or_paley(int64_t m) {
    std::vector<float> h(static_cast<size_t>(m * m));
    if ((m & (m - 1)) == 0) {
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < m; ++j)
          h[i * m + j] = (__builtin_popcountll(static_cast<uint64_t>(i & j)) & 1) ? -1.0f : 1.0f;
      return h;
    }
    // Paley I, q = m - 1 prime = 3 mod 4: H = I + S with S the skew
    // conditioning matrix [[0, 1^T], [-1, Q]], Q[i][j] = chi(j - i).
    const int64_t q = m - 1;
    auto chi = [q](int64_t v) {
      v = ((v % q) + q) % q;
      if (v == 0) return 0;
      for (int64_t y = 1; y < q; ++y)
        if ((y * y) % q == v) return 1;
      return -1;
    };
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) {
        int s = 0;
        if (i == 0 && j > 0) s = 1;
        else if (j == 0 && i > 0) s = -1;
        else if (i > 0 && j > 0) s = chi(j - i);
        h[i * m + j] = static_cast<float>((i == j ? 1 : 0) + s);
      }
    return h;
  }

  int64_t rows_, m_, p_, n_;
  bool signs_on_, inverse_;
  std::vector<float> x_, hm_, signs_;
  std::vector<double> ref_;
};

// y += x (add_inplace over rows*cols elements), y - x (subtract, out of place
// and aliased) or y[rows, cols] += bias[cols].
class AddCase final : public OpCase {
 public:
  AddCase(Op op, int64_t rows, int64_t cols) : op_(op), rows_(rows), cols_(cols) {}
  Op op() const override { return op_; }
  std::string shape() const override {
    return op_ != Op::AddBias ? "n=" + std::to_string(rows_ * cols_)
                                 : "rows=" + std::to_string(rows_) + " cols=" + std::to_string(cols_);
  }
  Tolerance tolerance() const override {
    return {0.0, "one correctly rounded float addition (subtraction) per element: the exact result rounded to "
                 "float is the only right answer, bit for bit"};
  }
  void prepare(std::mt19937_64& rng) override {
    y_ = random_normal<float>(rng, rows_ * cols_);
    const bool elementwise = op_ != Op::AddBias;
    // Subtract's x is y plus a small difference, as GPTAQ's X~ and X are.
    x_ = elementwise ? random_normal<float>(rng, rows_ * cols_, 1e-3) : random_normal<float>(rng, cols_);
    if (op_ == Op::Subtract)
      for (size_t i = 0; i < x_.size(); ++i) x_[i] += y_[i];
    ref_.resize(y_.size());
    for (int64_t r = 0; r < rows_; ++r)
      for (int64_t j = 0; j < cols_; ++j) {
        const int64_t i = r * cols_ + j;
        const double xv = x_[elementwise ? i : j];
        ref_[i] = static_cast<float>(op_ == Op::Subtract ? double(y_[i]) - xv : double(y_[i]) + xv);
      }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> y(be, y_), x(be, x_);
    Outcome o;
    if (op_ == Op::Subtract) {
      const GuardedBuffer<float> out(be, y_), y2(be, y_), x2(be, x_);
      be.subtract(y.get(), x.get(), out.get(), rows_ * cols_);
      be.subtract(y2.get(), x.get(), y2.get(), rows_ * cols_);  // out may alias a ...
      be.subtract(y.get(), x2.get(), x2.get(), rows_ * cols_);  // ... or b
      const std::vector<float> got = out.download("subtract out", &o.defect);
      if (!bitwise_equal(y2.download("subtract out=a", &o.defect), got) ||
          !bitwise_equal(x2.download("subtract out=b", &o.defect), got))
        o.defect = first_defect(o.defect, "aliased output differs from out of place");
      o.error = relative_error(got, ref_);
      return o;
    }
    if (op_ == Op::AddInplace)
      be.add_inplace(y.get(), x.get(), rows_ * cols_);
    else
      be.add_bias(y.get(), x.get(), rows_, cols_);
    o.error = relative_error(y.download(op_name(op_), &o.defect), ref_);
    return o;
  }

 private:
  Op op_;
  int64_t rows_, cols_;
  std::vector<float> y_, x_;
  std::vector<double> ref_;
};

// out = float(in) for bf16 bits (Backend::bf16_to_f32), against an
// independent float64 decoding of each bf16 (sign, exponent, mantissa; not
// the kernels' 16-bit shift), with every special value drawn: zeros of both
// signs, subnormals, infinities and NaNs whose payload must survive.
class Bf16ToF32Case final : public OpCase {
 public:
  explicit Bf16ToF32Case(int64_t n) : n_(n) {}
  Op op() const override { return Op::Bf16ToF32; }
  std::string shape() const override { return "n=" + std::to_string(n_); }
  Tolerance tolerance() const override {
    return {0.0, "widening is exact: every bf16 is a float, so the only right answer is that float bit for bit "
                 "(the error counts elements whose bits differ; NaN payloads included)"};
  }
  void prepare(std::mt19937_64& rng) override {
    std::uniform_int_distribution<uint32_t> bits(0, 0xffff);
    in_.resize(static_cast<size_t>(n_));
    for (auto& b : in_) b = static_cast<uint16_t>(bits(rng));
    const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x807f, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff, 0x3f80};
    for (size_t i = 0; i < std::size(specials) && i < in_.size(); ++i) in_[i] = specials[i];
    want_.resize(in_.size());
    for (size_t i = 0; i < in_.size(); ++i) {
      const uint32_t sign = in_[i] >> 15, exp = (in_[i] >> 7) & 0xff, man = in_[i] & 0x7f;
      uint32_t w = 0;
      if (exp == 0xff) {
        w = static_cast<uint32_t>(in_[i]) << 16;  // inf or NaN: the same bits, payload kept
      } else {
        // Normal: (1 + man/128) 2^(exp-127); subnormal: man/128 2^-126; exact in double and in float.
        const double v = (exp == 0 ? man / 128.0 * std::ldexp(1.0, -126)
                                   : (1.0 + man / 128.0) * std::ldexp(1.0, static_cast<int>(exp) - 127)) *
                         (sign ? -1.0 : 1.0);
        const float f = static_cast<float>(v);
        std::memcpy(&w, &f, 4);
        if (sign && v == 0.0) w = 0x80000000u;  // -0.0
      }
      want_[i] = w;
    }
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<uint16_t> in(be, in_);
    const GuardedBuffer<float> out(be, in_.size());
    be.bf16_to_f32(in.get(), out.get(), n_);
    Outcome o;
    const std::vector<float> got = out.download("bf16_to_f32 out", &o.defect);
    in.download("bf16_to_f32 in", &o.defect);  // guards only: the input is read, never written
    int64_t wrong = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      uint32_t g = 0;
      std::memcpy(&g, &got[i], 4);
      wrong += g != want_[i];
    }
    o.error = static_cast<double>(wrong);
    return o;
  }

 private:
  int64_t n_;
  std::vector<uint16_t> in_;
  std::vector<uint32_t> want_;
};

// The GPTQ sweep rows live in tests/kernels/backend_op_sweep_case.h.

}  // namespace streamq::test
