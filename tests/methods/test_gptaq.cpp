// GPTAQ, CAE and their variants: the blocked sweep against the naive float64
// reference on fresh random layers, block-size invariance of the exact
// variant, and the identities that must hold exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/backend.h"
#include "src/methods/gptq.h"
#include "tests/support/naive_reference.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// Blocked and naive differ by float64 rounding only: ~1e-15 per operation,
// grown by H's conditioning (diag spread ~10x, correlated inputs) over n ~ 70
// columns; measured below 1e-13 of max|W|. 1e-12 is the bound.
constexpr double kRelTol = 1e-12;

struct MethodCase {
  MethodKind method;
  bool cae;
  CaeSource source;
  Variant variant;
  bool p1_original;
  double alpha1, alpha2;
};

std::vector<MethodCase> method_cases() {
  std::vector<MethodCase> out;
  for (Variant v : {Variant::Exact, Variant::Official}) {
    out.push_back({MethodKind::Gptaq, false, CaeSource::Xx, v, false, 0.25, 0.25});
    out.push_back({MethodKind::Gptaq, true, CaeSource::Xx, v, false, 0.25, 0.25});
    out.push_back({MethodKind::Gptaq, true, CaeSource::Xx, v, false, 1.0, 1.0});
    out.push_back({MethodKind::Gptaq, false, CaeSource::Xx, v, true, 1.0, 0.25});
    out.push_back({MethodKind::Gptq, true, CaeSource::Xx, v, false, 0.25, 0.25});
    out.push_back({MethodKind::Gptq, true, CaeSource::Xfx, v, false, 0.25, 1.0});
    out.push_back({MethodKind::Gptq, false, CaeSource::Xx, v, false, 0.25, 0.25});
  }
  return out;
}

TEST(Gptaq, EveryMethodAndVariantEqualsTheNaiveReference) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  // (m, n, group, blocksize): groups starting mid-block and spanning blocks,
  // partial last groups, blocks that do and don't divide n, per channel.
  const int64_t shapes[][4] = {{7, 40, 16, 128}, {6, 45, 8, 7}, {5, 33, 32, 16}, {6, 52, -1, 5}, {4, 64, 16, 32}};
  const int bits_cycle[] = {2, 3, 4, 8, 3};
  int tie_rows = 0, rows = 0, n_case = 0;
  double worst = 0;
  for (const MethodCase& mc : method_cases()) {
    for (int opt = 0; opt < 8; ++opt) {
      const auto& s = shapes[n_case % 5];
      QuantConfig cfg;
      cfg.method = mc.method;
      cfg.cae = mc.cae;
      cfg.cae_source = mc.source;
      cfg.variant = mc.variant;
      cfg.p1_original = mc.p1_original;
      cfg.gptaq_alpha = mc.alpha1;
      cfg.cae_alpha = mc.alpha2;
      cfg.bits = bits_cycle[n_case % 5];
      cfg.group = s[2];
      cfg.blocksize = s[3];
      cfg.act_order = opt & 1;
      cfg.static_groups = (opt >> 1) & 1 && cfg.group > 0;
      cfg.sym = (opt >> 2) & 1;
      cfg.clip = n_case % 3 == 0 ? ClipSearch::Mse : ClipSearch::MinMax;
      cfg.grid_style = n_case % 4 == 1 ? GridStyle::Gptq : GridStyle::Quarot;
      ++n_case;
      const test::NaiveLayer L = test::random_naive_layer(rng, s[0], s[1], n_case % 3 == 0, 0.2);
      SCOPED_TRACE(cfg.describe() + " m=" + std::to_string(L.m) + " n=" + std::to_string(L.n));
      const std::vector<double> cross = L.cross();
      const QuantResult got =
          gptq_quantize(*be, L.w.data(), L.m, L.n, L.h(), cfg, cfg.needs_fp_flow() ? &cross : nullptr);
      const test::NaiveResult ref = test::naive_quantize(L, cfg);
      double wmax = 0;
      for (double v : L.w) wmax = std::max(wmax, std::fabs(v));
      for (int64_t r = 0; r < L.m; ++r) {
        ++rows;
        if (ref.tie_rows[r]) {
          ++tie_rows;
          continue;
        }
        for (int64_t c = 0; c < L.n; ++c) {
          const size_t i = r * L.n + c;
          ASSERT_EQ(got.codes[i], ref.codes[i]) << "row " << r << " col " << c;
          worst = std::max(worst, std::fabs(got.dequant[i] - ref.q[i]) / wmax);
          ASSERT_LE(std::fabs(got.dequant[i] - ref.q[i]), kRelTol * wmax) << "row " << r << " col " << c;
        }
      }
    }
  }
  std::cout << n_case << " cases, worst |blocked - naive| / max|W| = " << worst << "\n";
  EXPECT_LT(tie_rows * 20, rows) << tie_rows << " of " << rows << " rows hit a rounding tie";
}

TEST(Gptaq, ExactVariantIsBlocksizeInvariantAndOfficialIsNot) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const test::NaiveLayer L = test::random_naive_layer(rng, 16, 120, true, 0.3);
  const std::vector<double> h = L.h(), cross = L.cross();
  QuantConfig cfg;
  cfg.method = MethodKind::Gptaq;
  cfg.cae = true;
  cfg.bits = 3;
  cfg.group = 20;
  cfg.act_order = true;
  cfg.blocksize = 128;
  const QuantResult base = gptq_quantize(*be, L.w.data(), L.m, L.n, h, cfg, &cross);
  for (int64_t bs : {1, 7, 20, 64, 119}) {
    cfg.blocksize = bs;
    const QuantResult other = gptq_quantize(*be, L.w.data(), L.m, L.n, h, cfg, &cross);
    for (size_t i = 0; i < base.dequant.size(); ++i)
      ASSERT_NEAR(other.dequant[i], base.dequant[i], 1e-12) << "blocksize " << bs << " element " << i;
  }
  // The released code's shortcuts make the result depend on the block size.
  cfg.variant = Variant::Official;
  cfg.blocksize = 128;
  const QuantResult off128 = gptq_quantize(*be, L.w.data(), L.m, L.n, h, cfg, &cross);
  cfg.blocksize = 7;
  const QuantResult off7 = gptq_quantize(*be, L.w.data(), L.m, L.n, h, cfg, &cross);
  EXPECT_NE(off128.dequant, off7.dequant);
}

TEST(Gptaq, DegenerateSettingsEqualGptqExactly) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const test::NaiveLayer L = test::random_naive_layer(rng, 12, 70, true, 0.3);
  test::NaiveLayer same = L;
  same.x_fp = same.x;  // X~ = X
  const std::vector<double> h = L.h(), cross = L.cross(), zero_cross = same.cross();
  for (Variant v : {Variant::Exact, Variant::Official}) {
    QuantConfig gptq;
    gptq.bits = 3;
    gptq.group = 16;
    gptq.act_order = true;
    gptq.blocksize = 32;
    gptq.variant = v;
    const QuantResult base = gptq_quantize(*be, L.w.data(), L.m, L.n, h, gptq);

    QuantConfig alpha0 = gptq;  // GPTAQ with alpha 0
    alpha0.method = MethodKind::Gptaq;
    alpha0.gptaq_alpha = 0.0;
    EXPECT_EQ(gptq_quantize(*be, L.w.data(), L.m, L.n, h, alpha0, &cross).dequant, base.dequant);

    QuantConfig same_input = gptq;  // GPTAQ with X~ = X
    same_input.method = MethodKind::Gptaq;
    same_input.gptaq_alpha = 1.0;
    EXPECT_EQ(gptq_quantize(*be, L.w.data(), L.m, L.n, h, same_input, &zero_cross).dequant, base.dequant);

    QuantConfig cae0 = gptq;  // CAE with alpha2 0
    cae0.cae = true;
    cae0.cae_alpha = 0.0;
    EXPECT_EQ(gptq_quantize(*be, L.w.data(), L.m, L.n, h, cae0).dequant, base.dequant);
  }
}

TEST(Gptaq, GptaqMovesTowardTheFpOutput) {
  // With a real input deviation, GPTAQ at alpha 1 with the original weights in
  // P1 (the consistent FP-aligned target) must beat GPTQ on ||W X~ - Q X||^2.
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto be = make_cpu_backend();
  const test::NaiveLayer L = test::random_naive_layer(rng, 32, 64, false, 0.3);
  const std::vector<double> h = L.h(), cross = L.cross();
  auto objective_fp = [&](const QuantResult& r) {
    double total = 0;
    for (int64_t row = 0; row < L.m; ++row)
      for (int64_t t = 0; t < L.tokens; ++t) {
        double y = 0;
        for (int64_t i = 0; i < L.n; ++i)
          y += L.w[row * L.n + i] * L.x_fp[i * L.tokens + t] - r.dequant[row * L.n + i] * L.x[i * L.tokens + t];
        total += y * y;
      }
    return total;
  };
  QuantConfig cfg;
  cfg.bits = 4;
  const double gptq = objective_fp(gptq_quantize(*be, L.w.data(), L.m, L.n, h, cfg));
  cfg.method = MethodKind::Gptaq;
  cfg.gptaq_alpha = 1.0;
  cfg.p1_original = true;
  const double gptaq = objective_fp(gptq_quantize(*be, L.w.data(), L.m, L.n, h, cfg, &cross));
  EXPECT_LT(gptaq, gptq);
}

}  // namespace
}  // namespace streamq
