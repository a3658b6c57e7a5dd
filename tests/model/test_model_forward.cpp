// The whole stories260K model (embedding, five blocks, head) against the
// fixture's golden logits from an independent numpy float64 forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/backend.h"
#include "src/model/model.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// The fixture README measured fp32 implementations within 1.7e-5 of these
// float64 logits (max |logit| 22.5); 1e-4 leaves room for a different
// summation order without letting a real bug (>= 1e-3) through.
constexpr double kLogitAbsTol = 1e-4;

std::vector<float> forward_logits(const std::string& dir, const std::vector<int32_t>& ids) {
  Model model(dir);
  const ModelConfig& c = model.config();
  auto be = make_cpu_backend();
  const int64_t t = static_cast<int64_t>(ids.size());
  std::vector<float> x(t * c.hidden);
  model.embed(ids.data(), t, x.data());
  const RopeTable rope = model.rope_table(t);
  for (int64_t b = 0; b < c.layers; ++b) block_forward(*be, c, model.load_block(b), rope, x.data(), 1, t);
  std::vector<float> logits(t * c.vocab);
  model.head(*be, x.data(), t, logits.data());
  return logits;
}

TEST(ModelForward, Stories260KReproducesGoldenLogits) {
  const std::string fx = test::shared_fixtures_dir() + "/stories260K";
  const std::string tok_bytes = test::read_all(fx + "/golden_tokens.i32");
  const std::string logit_bytes = test::read_all(fx + "/golden_logits.f32");
  std::vector<int32_t> ids(tok_bytes.size() / 4);
  std::memcpy(ids.data(), tok_bytes.data(), tok_bytes.size());
  std::vector<float> golden(logit_bytes.size() / 4);
  std::memcpy(golden.data(), logit_bytes.data(), logit_bytes.size());
  ASSERT_EQ(ids.size(), 64u);
  ASSERT_EQ(golden.size(), 64u * 512u);

  const std::vector<float> got = forward_logits(test::demo_model_dir(), ids);
  double max_diff = 0;
  for (size_t i = 0; i < golden.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(got[i]) - golden[i]));
  EXPECT_LT(max_diff, kLogitAbsTol);
  std::cout << "max |logit - golden| = " << max_diff << "\n";

  // The tied variant (no lm_head.weight, tie_word_embeddings) is the same model.
  const std::vector<float> tied = forward_logits(fx + "/tied", ids);
  EXPECT_EQ(tied, got);
}

}  // namespace
}  // namespace streamq
