// The eval loss: parallel over tokens, yet the same double as a serial
// float64 log-sum-exp for any thread count (rows are independent and added in
// token order), and close to a max-free reference on tame logits.
#include <gtest/gtest.h>

#include <tbb/global_control.h>

#include <cmath>
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

TEST(EvalLoss, ParallelSumEqualsTheSerialFloat64LoopForAnyThreadCount) {
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
    EXPECT_EQ(sum_nll(logits.data(), targets.data(), tokens, vocab), want) << threads << " threads";
  }
  // Without the max shift (safe for |logits| < 40 here): the same value to
  // rounding, 1e-12 relative on a sum of ~257 terms of size ~10.
  double plain = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    double se = 0;
    for (int64_t v = 0; v < vocab; ++v) se += std::exp(static_cast<double>(logits[static_cast<size_t>(t * vocab + v)]));
    plain += std::log(se) - logits[static_cast<size_t>(t * vocab + targets[static_cast<size_t>(t)])];
  }
  EXPECT_NEAR(sum_nll(logits.data(), targets.data(), tokens, vocab), plain, 1e-12 * std::abs(plain));
}

}  // namespace
}  // namespace streamq
