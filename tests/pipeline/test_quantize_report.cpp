// The report's relative objective: one definition per linear (zero output ->
// 0), one mean over linears that the progress lines and the summary print,
// and the JSON carrying the same figure.
#include <gtest/gtest.h>

#include "src/pipeline/quantize.h"

namespace streamq {
namespace {

LinearReport linear(double objective, double weight_sq) {
  LinearReport l;
  l.objective = objective;
  l.weight_sq = weight_sq;
  return l;
}

TEST(QuantizeReport, MeanRelativeObjectiveIsOverEveryLinearOfTheBlocks) {
  BlockReport a, b;
  a.linears = {linear(1, 4), linear(3, 0)};  // 0.25, and 0 for a zero output
  b.linears = {linear(2, 4)};                // 0.5
  EXPECT_EQ(a.linears[1].relative_objective(), 0.0);
  const std::vector<BlockReport> blocks = {a, b};
  EXPECT_DOUBLE_EQ(mean_relative_objective(blocks), (0.25 + 0.0 + 0.5) / 3);
  EXPECT_DOUBLE_EQ(mean_relative_objective(std::span(blocks).last(1)), 0.5);
  EXPECT_EQ(mean_relative_objective({}), 0.0);
  EXPECT_EQ(a.to_json()["linears"][0]["relative_objective"].get<double>(), 0.25);
}

}  // namespace
}  // namespace streamq
