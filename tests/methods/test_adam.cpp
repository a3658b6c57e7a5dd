// Adam (adam.h) against a float64 implementation of Kingma & Ba's formulas
// (AdamW's decoupled decay), and the first step's known size lr * sign(g).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "src/methods/adam.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

constexpr double kF32Eps = std::numeric_limits<float>::epsilon();

// The textbook form, float64 state: bias-corrected moments, then the step.
struct AdamRef {
  AdamConfig cfg;
  std::vector<double> m, v;
  int t = 0;
  void step(std::vector<double>& p, const std::vector<float>& g) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] -= cfg.lr * cfg.weight_decay * p[i];
      m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g[i];
      v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * static_cast<double>(g[i]) * g[i];
      const double mhat = m[i] / (1 - std::pow(cfg.beta1, t));
      const double vhat = v[i] / (1 - std::pow(cfg.beta2, t));
      p[i] -= cfg.lr * mhat / (std::sqrt(vhat) + cfg.eps);
    }
  }
};

TEST(Adam, MatchesAFloat64ReferenceOverManySteps) {
  STREAMQ_FRESH_RNG(rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 257;
  const int kSteps = 30;
  for (double wd : {0.0, 0.05}) {
    SCOPED_TRACE("weight_decay " + std::to_string(wd));
    AdamConfig cfg;
    cfg.lr = 1e-2;  // large enough that the params move well past float rounding
    cfg.weight_decay = wd;
    Adam adam(cfg, n);
    AdamRef ref{cfg, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
    std::vector<float> p(static_cast<size_t>(n));
    for (auto& x : p) x = nd(rng);
    std::vector<double> pr(p.begin(), p.end());
    const std::vector<double> p0 = pr;
    double pmax = 0;
    for (float x : p) pmax = std::max(pmax, static_cast<double>(std::fabs(x)));
    for (int s = 0; s < kSteps; ++s) {
      std::vector<float> g(static_cast<size_t>(n));
      for (auto& x : g) x = nd(rng) * 0.1f + 0.05f;  // noisy with a drift, as a training gradient
      adam.step(p.data(), g.data());
      ref.step(pr, g);
    }
    EXPECT_EQ(adam.steps(), kSteps);
    // Adam's step is at most lr (1 - beta1) / sqrt(1 - beta2) ~= 3.2 lr
    // (Kingma & Ba, section 2.1): 4 lr. Per step the float path rounds p
    // (eps |p|, |p| <= pmax + kSteps * 4 lr) and the update (m and v carry at
    // most t eps relative each from their recursions, the quotient a few eps
    // more: <= (t + 4) eps of 4 lr); summed over the steps.
    const double step_max = 4 * cfg.lr;
    const double tol = kSteps * kF32Eps * (pmax + kSteps * step_max + (kSteps + 4) * step_max);
    double moved = 0;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(p[i], pr[i], tol) << "param " << i;
      moved = std::max(moved, std::fabs(pr[i] - p0[i]));
    }
    EXPECT_GT(moved, 100 * tol);  // the comparison is not vacuous
  }
}

// With a constant gradient mhat = g and vhat = g^2 at every step, so each
// step moves every param by lr * g / (|g| + eps) = lr * sign(g) (1 - eps/|g|).
TEST(Adam, ConstantGradientMovesEachParamByLrTimesSign) {
  STREAMQ_FRESH_RNG(rng);
  std::uniform_real_distribution<float> mag(-2.0f, 1.0f);  // |g| in [0.01, 10]
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 100;
  AdamConfig cfg;  // the paper's lr 2.5e-4, weight_decay 0
  Adam adam(cfg, n);
  std::vector<float> p(static_cast<size_t>(n)), g(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    p[i] = nd(rng);
    g[i] = std::pow(10.0f, mag(rng)) * (i % 2 ? -1.0f : 1.0f);
  }
  for (int s = 0; s < 3; ++s) {
    const std::vector<float> before = p;
    adam.step(p.data(), g.data());
    for (int64_t i = 0; i < n; ++i) {
      const double expect = -cfg.lr * (g[i] > 0 ? 1.0 : -1.0);
      // eps / |g| <= 1e-6 relative to lr, the float update a few eps of lr
      // (8), and p's rounding (one eps of |p|) seen in the difference.
      const double tol = cfg.lr * (cfg.eps / std::fabs(g[i]) + 8 * kF32Eps) + kF32Eps * std::fabs(before[i]);
      EXPECT_NEAR(static_cast<double>(p[i]) - before[i], expect, tol) << "step " << s << " param " << i;
    }
  }
  EXPECT_EQ(adam.steps(), 3);
}

TEST(Adam, ZeroGradientLeavesParamsAndBadConfigsAreRefused) {
  Adam adam(AdamConfig{}, 4);
  std::vector<float> p = {1.0f, -2.0f, 0.0f, 3.5f}, g(4, 0.0f);
  const std::vector<float> p0 = p;
  adam.step(p.data(), g.data());
  EXPECT_EQ(p, p0);  // m = v = 0: the update 0 / (0 + eps) is exactly 0
  Adam empty(AdamConfig{}, 0);
  empty.step(nullptr, nullptr);
  EXPECT_EQ(empty.steps(), 1);
  AdamConfig bad;
  bad.beta2 = 1.0;
  EXPECT_THROW(Adam(bad, 3), InputError);
  bad = AdamConfig{};
  bad.lr = -1;
  EXPECT_THROW(Adam(bad, 3), InputError);
  EXPECT_THROW(Adam(AdamConfig{}, -1), InputError);
}

}  // namespace
}  // namespace streamq
