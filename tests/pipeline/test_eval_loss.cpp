// The eval loss: the float64 reference parallel over tokens, yet the same
// double as a serial float64 log-sum-exp for any thread count (rows are
// independent and added in token order), and close to a max-free reference
// on tame logits; the fast loss (float exp terms) the same for any thread
// count and within its derived bound of the reference.
#include <gtest/gtest.h>

#include <tbb/global_control.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "src/pipeline/eval.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

double serial_reference(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t vocab) {
  double total = 0;
  for (size_t t = 0; t < targets.size(); ++t) {
    const float* row = logits.data() + t * static_cast<size_t>(vocab);
    double mx = row[0];
    for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(row[v]));
    double se = 0;
    for (int64_t v = 0; v < vocab; ++v) se += std::exp(static_cast<double>(row[v]) - mx);
    total += mx + std::log(se) - static_cast<double>(row[targets[t]]);
  }
  return total;
}

TEST(EvalLoss, ReferenceParallelSumEqualsTheSerialFloat64LoopForAnyThreadCount) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t tokens = 257, vocab = 1531;
  std::normal_distribution<float> nd(0.0f, 6.0f);
  std::vector<float> logits(static_cast<size_t>(tokens * vocab));
  for (float& x : logits) x = nd(rng);
  std::vector<int32_t> targets(static_cast<size_t>(tokens));
  for (int32_t& t : targets) t = static_cast<int32_t>(rng() % vocab);
  const double want = serial_reference(logits, targets, vocab);
  for (int threads : {1, 2, 7}) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads));
    EXPECT_EQ(sum_nll_reference(logits.data(), targets.data(), tokens, vocab), want) << threads << " threads";
  }
  // Without the max shift (safe for |logits| < 40 here): the same value to
  // rounding, 1e-12 relative on a sum of ~257 terms of size ~10.
  double plain = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    double se = 0;
    for (int64_t v = 0; v < vocab; ++v) se += std::exp(static_cast<double>(logits[static_cast<size_t>(t * vocab + v)]));
    plain += std::log(se) - logits[static_cast<size_t>(t * vocab + targets[static_cast<size_t>(t)])];
  }
  EXPECT_NEAR(sum_nll_reference(logits.data(), targets.data(), tokens, vocab), plain, 1e-12 * std::abs(plain));
}

// eval.cpp's bound on |token_nll - reference| per token: the exp's 2 ulp, the
// rounded x - max (2^-24 E_p|d| <= 2^-24 log(vocab)), the double sums.
double float_terms_bound(int64_t vocab) {
  return std::ldexp(1.0, -23) + std::ldexp(1.0, -24) * std::log(static_cast<double>(vocab)) + 1e-11;
}

TEST(EvalLoss, FloatTermsAreWithinTheirBoundOfTheFloat64ReferenceForAnyThreadCount) {
  STREAMQ_FRESH_RNG(rng);
  // Tame logits, wide ones (most terms underflow), a peaked row per token
  // (the target far above the rest, as a confident model), odd sizes.
  for (const float sigma : {1.0f, 6.0f, 40.0f}) {
    for (const int64_t vocab : {1, 17, 1531, 49152}) {
      const int64_t tokens = vocab > 10000 ? 9 : 67;
      std::normal_distribution<float> nd(0.0f, sigma);
      std::vector<float> logits(static_cast<size_t>(tokens * vocab));
      for (float& x : logits) x = nd(rng);
      std::vector<int32_t> targets(static_cast<size_t>(tokens));
      for (int32_t& t : targets) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
      logits[static_cast<size_t>(targets[0])] += 30.0f;
      const double want = sum_nll_reference(logits.data(), targets.data(), tokens, vocab);
      double got = 0;
      for (int threads : {1, 2, 7}) {
        tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads));
        const double v = sum_nll(logits.data(), targets.data(), tokens, vocab);
        if (threads == 1) got = v;
        EXPECT_EQ(v, got) << threads << " threads";
      }
      EXPECT_NEAR(got, want, static_cast<double>(tokens) * float_terms_bound(vocab))
          << "sigma " << sigma << " vocab " << vocab;
    }
  }
}

TEST(EvalLoss, NonFiniteLogitsGiveTheReferencesValue) {
  const int64_t vocab = 40;
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    std::vector<float> logits(static_cast<size_t>(2 * vocab), 0.5f);
    logits[static_cast<size_t>(vocab + 33)] = bad;  // in the second row, in the vector tail's reach
    const std::vector<int32_t> targets = {3, 3};
    const double want = sum_nll_reference(logits.data(), targets.data(), 2, vocab);
    const double got = sum_nll(logits.data(), targets.data(), 2, vocab);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << bad;
    } else {
      EXPECT_EQ(got, want) << bad;
    }
  }
}

}  // namespace
}  // namespace streamq
