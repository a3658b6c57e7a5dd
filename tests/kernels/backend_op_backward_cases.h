// The backward ops' rows of the backend op table (test_backend_ops.cpp):
// rmsnorm_backward, rope_backward, attention_backward, swiglu_backward, each
// against its float64 analytic gradient written from the definition (the
// references below; test_backward_ops.cpp holds these references, and the
// backends, to central finite differences of float64 forwards).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/backend_op_cases.h"
#include "tests/support/attention_reference.h"
#include "tests/support/backend_test_util.h"
#include "tests/support/rope_reference.h"

namespace streamq::test {

// ---- float64 analytic gradients

// dx of y = x / sqrt(mean(x^2) + eps) * w given dy, rows of dim.
inline std::vector<double> ref_rmsnorm_backward(const std::vector<float>& x, const std::vector<float>& w,
                                                const std::vector<float>& dy, int64_t rows, int64_t dim, double eps) {
  std::vector<double> dx(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0, dot = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      ss += double(x[r * dim + i]) * x[r * dim + i];
      dot += double(dy[r * dim + i]) * w[i] * x[r * dim + i];
    }
    const double rinv = 1.0 / std::sqrt(ss / double(dim) + eps);
    for (int64_t i = 0; i < dim; ++i)
      dx[r * dim + i] = rinv * w[i] * dy[r * dim + i] - x[r * dim + i] * rinv * rinv * rinv * dot / double(dim);
  }
  return dx;
}

struct AttentionGrads {
  std::vector<double> dq, dk, dv;
};

// From the definition, per sequence, head and query t: p = softmax_j(q.k_j
// / sqrt(hd)) over j <= t, out = sum_j p_j v_j; so dv_j += p_j dout,
// dp_j = dout.v_j, ds_j = p_j (dp_j - sum_l p_l dp_l), dq = sum_j ds_j k_j /
// sqrt(hd), dk_j += ds_j q / sqrt(hd).
inline AttentionGrads ref_attention_backward(const AttentionInputs& in, const std::vector<float>& dout,
                                             const AttentionCase& c) {
  const int64_t qw = c.nheads * c.hd, kw = c.nkv * c.hd;
  AttentionGrads g;
  g.dq.assign(in.q.size(), 0.0);
  g.dk.assign(in.k.size(), 0.0);
  g.dv.assign(in.v.size(), 0.0);
  const double scale = 1.0 / std::sqrt(double(c.hd));
  std::vector<double> p(c.seqlen), dp(c.seqlen);
  for (int64_t s = 0; s < c.nseq; ++s)
    for (int64_t h = 0; h < c.nheads; ++h) {
      const int64_t kvh = h / (c.nheads / c.nkv);
      for (int64_t t = 0; t < c.seqlen; ++t) {
        const int64_t qo = (s * c.seqlen + t) * qw + h * c.hd;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= t; ++j) {
          const int64_t ko = (s * c.seqlen + j) * kw + kvh * c.hd;
          double d = 0.0;
          for (int64_t i = 0; i < c.hd; ++i) d += double(in.q[qo + i]) * in.k[ko + i];
          p[j] = d * scale;
          mx = std::max(mx, p[j]);
        }
        for (int64_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - mx));
        double big_d = 0.0;
        for (int64_t j = 0; j <= t; ++j) {
          p[j] /= sum;
          const int64_t vo = (s * c.seqlen + j) * kw + kvh * c.hd;
          double d = 0.0;
          for (int64_t i = 0; i < c.hd; ++i) d += double(dout[qo + i]) * in.v[vo + i];
          dp[j] = d;
          big_d += p[j] * d;
        }
        for (int64_t j = 0; j <= t; ++j) {
          const int64_t ko = (s * c.seqlen + j) * kw + kvh * c.hd;
          const double ds = p[j] * (dp[j] - big_d) * scale;
          for (int64_t i = 0; i < c.hd; ++i) {
            g.dq[qo + i] += ds * in.k[ko + i];
            g.dk[ko + i] += ds * in.q[qo + i];
            g.dv[ko + i] += p[j] * dout[qo + i];
          }
        }
      }
    }
  return g;
}

// d/dg of silu(g) u = u sig (1 + g (1 - sig)); d/du = g sig. dgate_mag is
// what float error in dgate scales with: |dy u| sig (1 + |g| (1 - sig)), the
// size of the two summands. 1 + g (1 - sig) is 0 at g ~ -2.40, where the sum
// cancels: there no float formula has bounded error relative to dgate itself.
inline void ref_swiglu_backward(const std::vector<float>& gate, const std::vector<float>& up,
                                const std::vector<float>& dout, std::vector<double>& dgate, std::vector<double>& dup,
                                std::vector<double>& dgate_mag) {
  dgate.resize(gate.size());
  dup.resize(gate.size());
  dgate_mag.resize(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i], sig = 1.0 / (1.0 + std::exp(-g));
    dgate[i] = double(dout[i]) * up[i] * sig * (1.0 + g * (1.0 - sig));
    dgate_mag[i] = std::abs(double(dout[i]) * up[i]) * sig * (1.0 + std::abs(g) * (1.0 - sig));
    dup[i] = double(dout[i]) * g * sig;
  }
}

// ---- the table rows

class RmsnormBackwardCase final : public OpCase {
 public:
  RmsnormBackwardCase(int64_t rows, int64_t dim, float eps) : rows_(rows), dim_(dim), eps_(eps) {}
  Op op() const override { return Op::RmsnormBackward; }
  std::string shape() const override {
    return "rows=" + std::to_string(rows_) + " dim=" + std::to_string(dim_) + " eps=" + std::to_string(eps_);
  }
  Tolerance tolerance() const override {
    return {8 * kF32Eps,
            "double row sums and double per-element arithmetic on float inputs, rounded once to float: ~0.5 eps; "
            "8 eps leaves room for float sums (sqrt(dim) eps at the dims here) on another backend"};
  }
  void prepare(std::mt19937_64& rng) override {
    x_ = random_normal<float>(rng, rows_ * dim_, 3.0);
    for (int64_t i = 0; i < dim_ && rows_ > 0; ++i) x_[i] *= 1e-3f;  // a row near zero makes eps matter
    w_ = random_normal<float>(rng, dim_);
    dy_ = random_normal<float>(rng, rows_ * dim_);
    ref_ = ref_rmsnorm_backward(x_, w_, dy_, rows_, dim_, eps_);
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> x(be, x_), w(be, w_), dy(be, dy_), dx(be, x_.size()), inplace(be, dy_);
    be.rmsnorm_backward(x.get(), w.get(), dy.get(), dx.get(), rows_, dim_, eps_);
    be.rmsnorm_backward(x.get(), w.get(), inplace.get(), inplace.get(), rows_, dim_, eps_);  // dx may alias dy
    Outcome o;
    const std::vector<float> got = dx.download("rmsnorm_backward dx", &o.defect);
    if (dy.download("rmsnorm_backward dy", &o.defect) != dy_) o.defect = first_defect(o.defect, "input dy modified");
    if (!bitwise_equal(inplace.download("rmsnorm_backward in place", &o.defect), got))
      o.defect = first_defect(o.defect, "in place (dx aliasing dy) differs from out of place");
    o.error = relative_error(got, ref_);
    return o;
  }

 private:
  int64_t rows_, dim_;
  float eps_;
  std::vector<float> x_, w_, dy_;
  std::vector<double> ref_;
};

class RopeBackwardCase final : public OpCase {
 public:
  RopeBackwardCase(int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim)
      : nseq_(nseq), seqlen_(seqlen), nheads_(nheads), hd_(head_dim) {}
  Op op() const override { return Op::RopeBackward; }
  std::string shape() const override {
    return rope_shape(nseq_, seqlen_, nheads_, hd_);
  }
  Tolerance tolerance() const override {
    return {4 * kF32Eps, "the forward's bound: two float products and one sum per element of a rotation"};
  }
  void prepare(std::mt19937_64& rng) override {
    max_pos_ = seqlen_ + 3;
    HfRopeTable table = hf_rope_table(max_pos_, hd_);
    cos_ = std::move(table.cos);
    sin_ = std::move(table.sin);
    d_ = random_normal<float>(rng, nseq_ * seqlen_ * nheads_ * hd_);
    // The transpose of the rotation: each (i, i + hd/2) pair rotated by -angle.
    ref_ = rope64(d_, cos_, sin_, nseq_, seqlen_, nheads_, hd_, /*inverse=*/true);
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> c(be, cos_), s(be, sin_), d(be, d_);
    be.rope_backward(d.get(), nseq_, seqlen_, nheads_, hd_, RopeTable{max_pos_, hd_ / 2, c.get(), s.get()});
    Outcome o;
    o.error = relative_error(d.download("rope_backward d", &o.defect), ref_);
    return o;
  }

 private:
  int64_t nseq_, seqlen_, nheads_, hd_, max_pos_ = 0;
  std::vector<float> cos_, sin_, d_;
  std::vector<double> ref_;
};

class AttentionBackwardCase final : public OpCase {
 public:
  explicit AttentionBackwardCase(const AttentionCase& c) : c_(c) {}
  Op op() const override { return Op::AttentionBackward; }
  std::string shape() const override {
    return attention_shape(c_);
  }
  Tolerance tolerance() const override {
    return {16.0 * std::sqrt(double(c_.hd + c_.seqlen)) * kF32Eps,
            "the worst of dq, dk, dv in relative norm: float hd-term dots for the scores and dout.v (errors "
            "growing like sqrt(hd) eps), float softmax, sums over up to seqlen keys; 16x for the "
            "p (dp - D) difference, whose terms partly cancel"};
  }
  void prepare(std::mt19937_64& rng) override {
    in_ = std::make_unique<AttentionInputs>(rng, c_);
    dout_ = random_normal<float>(rng, static_cast<int64_t>(in_->q.size()));
    ref_ = ref_attention_backward(*in_, dout_, c_);
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> q(be, in_->q), k(be, in_->k), v(be, in_->v), dout(be, dout_);
    const GuardedBuffer<float> dq(be, in_->q.size()), dk(be, in_->k.size()), dv(be, in_->v.size());
    be.attention_backward(q.get(), k.get(), v.get(), dout.get(), dq.get(), dk.get(), dv.get(), c_.nseq, c_.seqlen,
                          c_.nheads, c_.nkv, c_.hd);
    Outcome o;
    // One key per query (seqlen 1) makes dq and dk exactly zero (the softmax
    // is constant): there a relative error is 0/0, and zero is the only answer.
    const auto error = [](const std::vector<float>& got, const std::vector<double>& ref) {
      if (std::all_of(ref.begin(), ref.end(), [](double r) { return r == 0.0; }))
        return std::all_of(got.begin(), got.end(), [](float g) { return g == 0.0f; }) ? 0.0 : double(INFINITY);
      return relative_error(got, ref);
    };
    const double eq = error(dq.download("attention_backward dq", &o.defect), ref_.dq);
    const double ek = error(dk.download("attention_backward dk", &o.defect), ref_.dk);
    const double ev = error(dv.download("attention_backward dv", &o.defect), ref_.dv);
    o.error = std::isnan(eq) || std::isnan(ek) || std::isnan(ev) ? NAN : std::max({eq, ek, ev});
    return o;
  }

 private:
  AttentionCase c_;
  std::unique_ptr<AttentionInputs> in_;
  std::vector<float> dout_;
  AttentionGrads ref_;
};

class SwigluBackwardCase final : public OpCase {
 public:
  explicit SwigluBackwardCase(int64_t n) : n_(n) {}
  Op op() const override { return Op::SwigluBackward; }
  std::string shape() const override { return "n=" + std::to_string(n_); }
  Tolerance tolerance() const override {
    return {16 * kF32Eps,
            "expf (<= 2 ulp), then ~6 float operations per output each <= eps/2; dgate's error is measured against "
            "the size of its summands (1 + g (1 - sig) cancels near g = -2.40: CI seed 59255704203282 put n=1 there)"};
  }
  void prepare(std::mt19937_64& rng) override {
    gate_ = random_normal<float>(rng, n_, 4.0);
    up_ = random_normal<float>(rng, n_);
    dout_ = random_normal<float>(rng, n_);
    if (n_ > 2) gate_[0] = -100.0f, gate_[1] = 100.0f;  // exp(-g) overflow and saturation
    ref_swiglu_backward(gate_, up_, dout_, ref_gate_, ref_up_, ref_gate_mag_);
  }
  Outcome run(Backend& be) override {
    const GuardedBuffer<float> gate(be, gate_), up(be, up_), dout(be, dout_), dgate(be, gate_.size()),
        dup(be, gate_.size());
    be.swiglu_backward(gate.get(), up.get(), dout.get(), dgate.get(), dup.get(), n_);
    // Outputs aliasing inputs: dgate over gate, dup over up; and dup over dout.
    const GuardedBuffer<float> g2(be, gate_), u2(be, up_), d3(be, dout_), dg3(be, gate_.size());
    be.swiglu_backward(g2.get(), u2.get(), dout.get(), g2.get(), u2.get(), n_);
    be.swiglu_backward(gate.get(), up.get(), d3.get(), dg3.get(), d3.get(), n_);
    Outcome o;
    const std::vector<float> got_g = dgate.download("swiglu_backward dgate", &o.defect);
    const std::vector<float> got_u = dup.download("swiglu_backward dup", &o.defect);
    if (!bitwise_equal(g2.download("dgate=gate", &o.defect), got_g) ||
        !bitwise_equal(u2.download("dup=up", &o.defect), got_u) ||
        !bitwise_equal(dg3.download("dgate (dup=dout)", &o.defect), got_g) ||
        !bitwise_equal(d3.download("dup=dout", &o.defect), got_u))
      o.defect = first_defect(o.defect, "aliased outputs differ from out of place");
    const double eg = relative_error(got_g.data(), ref_gate_.data(), ref_gate_mag_.data(), n_);
    const double eu = relative_error(got_u, ref_up_);
    o.error = std::isnan(eg) || std::isnan(eu) ? NAN : std::max(eg, eu);
    return o;
  }

 private:
  int64_t n_;
  std::vector<float> gate_, up_, dout_;
  std::vector<double> ref_gate_, ref_up_, ref_gate_mag_;
};

}  // namespace streamq::test
