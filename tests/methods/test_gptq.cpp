// GPTQ's blocked lazy-batch sweep against a naive float64 reference that, for
// every column, quantizes it and solves the remaining damped Hessian explicitly
// for the optimal update of all later columns.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "kernels/backend.h"
#include "kernels/forwarding_backend.h"
#include "src/methods/gptq.h"
#include "src/methods/grid.h"
#include "src/methods/linear_stats.h"
#include "src/methods/method.h"
#include "tests/support/naive_reference.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// The blocked and naive sweeps differ only by float64 rounding (~1e-15 per
// operation, amplified by the conditioning of H); 1e-9 relative to max|W| is
// far above that and far below one quantization step.
constexpr double kSweepRelTol = 1e-9;
// A value within this of a rounding tie may legitimately round either way
// under one-ulp differences (see METHODS-NOTES on the GPTQ grid).
constexpr double kTieWindow = 1e-9;

using test::NaiveLayer;

NaiveLayer random_layer(std::mt19937_64& rng, int64_t m, int64_t n, bool dead_input) {
  return test::random_naive_layer(rng, m, n, dead_input, 0.0);
}

struct Case {
  int64_t m, n;
  QuantConfig cfg;
  bool dead;
};

void compare_case(Backend& be, std::mt19937_64& rng, const Case& c, int* tie_rows_total, int* rows_total) {
  const NaiveLayer L = random_layer(rng, c.m, c.n, c.dead);
  const QuantResult got = gptq_quantize(be, L.w.data(), L.m, L.n, L.h(), c.cfg);
  const test::NaiveResult ref = test::naive_quantize(L, c.cfg);
  double wmax = 0;
  for (double v : L.w) wmax = std::max(wmax, std::fabs(v));
  for (int64_t r = 0; r < L.m; ++r) {
    ++*rows_total;
    if (ref.tie_rows[r]) {
      ++*tie_rows_total;
      continue;
    }
    for (int64_t col = 0; col < L.n; ++col) {
      const size_t i = r * L.n + col;
      ASSERT_EQ(got.codes[i], ref.codes[i]) << "row " << r << " col " << col;
      ASSERT_LE(std::fabs(got.dequant[i] - ref.q[i]), kSweepRelTol * wmax) << "row " << r << " col " << col;
    }
  }
}

std::string case_name(const Case& c) {
  return c.cfg.describe() + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + (c.dead ? " dead-input" : "");
}

TEST(Gptq, BlockedSweepEqualsNaiveReferenceOnAllOptionCombinations) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const int bits_cycle[] = {2, 3, 4, 8};
  // (m, n, group, blocksize): groups that start mid-block and span blocks,
  // partial last groups, blocks that do and don't divide n.
  const int64_t shapes[][4] = {{9, 40, 16, 128}, {6, 45, 8, 7}, {5, 33, 32, 16}, {7, 52, -1, 5}, {4, 70, 12, 32}};
  int tie_rows = 0, rows = 0, ncase = 0;
  for (int combo = 0; combo < 32; ++combo) {
    for (const auto& s : shapes) {
      Case c{s[0], s[1], QuantConfig{}, (combo + ncase) % 3 == 0};
      c.cfg.act_order = combo & 1;
      c.cfg.static_groups = (combo >> 1) & 1;
      c.cfg.sym = (combo >> 2) & 1;
      c.cfg.grid_style = (combo >> 3) & 1 ? GridStyle::Gptq : GridStyle::Quarot;
      c.cfg.clip = (combo >> 4) & 1 ? ClipSearch::Mse : ClipSearch::MinMax;
      c.cfg.bits = bits_cycle[ncase % 4];
      c.cfg.group = s[2];
      c.cfg.blocksize = s[3];
      if (c.cfg.group < 0) c.cfg.static_groups = false;
      ++ncase;
      SCOPED_TRACE(case_name(c));
      compare_case(*be, rng, c, &tie_rows, &rows);
      if (HasFatalFailure()) return;
    }
  }
  // Ties are rare; if they were common the comparison above would be hollow.
  EXPECT_LT(tie_rows * 20, rows) << tie_rows << " of " << rows << " rows hit a rounding tie";
}

TEST(Gptq, ExactVariantIsBlocksizeInvariant) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const NaiveLayer L = random_layer(rng, 24, 150, true);
  QuantConfig cfg;
  cfg.bits = 3;
  cfg.group = 20;
  cfg.act_order = true;
  cfg.blocksize = 128;
  const QuantResult base = gptq_quantize(*be, L.w.data(), L.m, L.n, L.h(), cfg);
  for (int64_t bs : {1, 7, 20, 64, 149, 1000}) {
    cfg.blocksize = bs;
    const QuantResult other = gptq_quantize(*be, L.w.data(), L.m, L.n, L.h(), cfg);
    for (size_t i = 0; i < base.dequant.size(); ++i) {
      ASSERT_NEAR(other.dequant[i], base.dequant[i], 1e-12) << "blocksize " << bs << " element " << i;
      ASSERT_EQ(other.codes[i], base.codes[i]) << "blocksize " << bs << " element " << i;
    }
  }
}

TEST(Gptq, IdentityHessianEqualsRtn) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  for (int64_t group : {int64_t{-1}, int64_t{16}}) {
    for (bool sym : {true, false}) {
      const int64_t m = 11, n = 50;
      std::vector<double> w(m * n), h(n * n, 0.0);
      std::normal_distribution<double> nd;
      for (auto& v : w) v = nd(rng);
      for (int64_t i = 0; i < n; ++i) h[i * n + i] = 3.5;
      QuantConfig cfg;
      cfg.group = group;
      cfg.sym = sym;
      cfg.clip = ClipSearch::Mse;
      const QuantResult a = gptq_quantize(*be, w.data(), m, n, h, cfg);
      const QuantResult b = rtn_quantize(w.data(), m, n, cfg);
      EXPECT_EQ(a.codes, b.codes);
      EXPECT_EQ(a.dequant, b.dequant);
      EXPECT_EQ(a.scales, b.scales);
      EXPECT_EQ(a.g_idx, b.g_idx);
    }
  }
}

TEST(Gptq, DeadInputsAreZeroAndCholeskyFailuresRetryWithMoreDamping) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const int64_t m = 8, n = 30, tokens = 10;  // tokens < n: H is singular
  std::normal_distribution<double> nd;
  std::vector<double> w(m * n), x(n * tokens), h(n * n, 0.0);
  for (auto& v : w) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  for (int64_t t = 0; t < tokens; ++t) x[4 * tokens + t] = 0;  // input 4 is dead
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b)
      for (int64_t t = 0; t < tokens; ++t) h[a * n + b] += x[a * tokens + t] * x[b * tokens + t];
  QuantConfig cfg;
  cfg.percdamp = 0.0;  // no damping: the first factorization must fail
  const QuantResult r = gptq_quantize(*be, w.data(), m, n, h, cfg);
  EXPECT_GT(r.cholesky_retries, 0);
  EXPECT_GT(r.damp, 0.0);
  EXPECT_EQ(r.dead_inputs, 1);
  for (int64_t row = 0; row < m; ++row) EXPECT_EQ(r.dequant[row * n + 4], 0.0);
  for (double v : r.dequant) ASSERT_TRUE(std::isfinite(v));
}

TEST(Gptq, LayerObjectiveEqualsOutputErrorAndBeatsRtn) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const NaiveLayer L = random_layer(rng, 32, 64, false);
  // LinearStats accumulates the same X (as float chunks) and its H feeds GPTQ.
  LinearStats stats(L.n);
  std::vector<float> chunk(L.tokens * L.n);
  for (int64_t t = 0; t < L.tokens; ++t)
    for (int64_t i = 0; i < L.n; ++i) chunk[t * L.n + i] = static_cast<float>(L.x[i * L.tokens + t]);
  stats.accumulate(*be, chunk.data(), L.tokens, 1);
  QuantConfig cfg;
  cfg.bits = 3;
  const QuantResult g = gptq_quantize(*be, L.w.data(), L.m, L.n, stats.hessian(), cfg);
  const QuantResult r = rtn_quantize(L.w.data(), L.m, L.n, cfg);
  const double obj = layer_objective(*be, L.w.data(), g, stats.xx_sum(), stats.tokens());
  double direct = 0;  // ||(W - Q) X||^2 / T with X as float, summed directly
  for (int64_t row = 0; row < L.m; ++row)
    for (int64_t t = 0; t < L.tokens; ++t) {
      double y = 0;
      for (int64_t i = 0; i < L.n; ++i)
        y += (L.w[row * L.n + i] - g.dequant[row * L.n + i]) * static_cast<double>(chunk[t * L.n + i]);
      direct += y * y;
    }
  direct /= L.tokens;
  // X^T X is formed in float32 per chunk: relative error ~ n * 2^-24.
  EXPECT_NEAR(obj, direct, 1e-4 * direct);
  EXPECT_LT(obj, layer_objective(*be, L.w.data(), r, stats.xx_sum(), stats.tokens()));
}

// Forwards to the CPU backend, counting factorizations. The CPU backend is a
// base listed first, so it exists before ForwardingBackend is given it.
struct OwnsCpuBackend {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
};
class CountingBackend final : public OwnsCpuBackend, public ForwardingBackend {
 public:
  CountingBackend() : ForwardingBackend(*cpu) {}
  int factorizations = 0;
  std::string name() const override { return "counting"; }
  bool inverse_upper_factor(double* h, int64_t n) override {
    ++factorizations;
    return inner_.inverse_upper_factor(h, n);
  }
};

TEST(Gptq, LinearsSharingAnInputShareOneFactorization) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  CountingBackend be;
  const NaiveLayer L = random_layer(rng, 16, 48, true);
  std::vector<float> chunk(L.tokens * L.n);
  for (int64_t t = 0; t < L.tokens; ++t)
    for (int64_t i = 0; i < L.n; ++i) chunk[t * L.n + i] = static_cast<float>(L.x[i * L.tokens + t]);
  LinearStats stats(L.n);
  stats.accumulate(be, chunk.data(), L.tokens, 1);
  QuantConfig cfg;
  cfg.group = 16;
  cfg.act_order = true;
  const auto method = make_method(cfg);
  const auto prepared = method->prepare(be, stats);
  std::vector<QuantResult> shared;
  for (int i = 0; i < 3; ++i) {  // q, k, v: three weights, one input
    std::vector<double> w = L.w;
    for (auto& v : w) v *= 1.0 + 0.5 * i;
    shared.push_back(method->quantize(be, w.data(), L.m, L.n, *prepared));
    const QuantResult alone = gptq_quantize(*be.cpu, w.data(), L.m, L.n, stats.hessian(), cfg);
    EXPECT_EQ(shared.back().dequant, alone.dequant);
  }
  EXPECT_EQ(be.factorizations, 1);
}

}  // namespace
}  // namespace streamq
