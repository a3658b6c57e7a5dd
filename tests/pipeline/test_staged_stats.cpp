// Staged statistics (each sub-layer group's input computed once and kept)
// give the bytes of the recompute path (the block rerun up to every group),
// for every kind of statistic: the quantized flow alone, both flows, LoaQ's
// residual terms and token scales, on stories260K and on a synthetic
// Qwen2-style model with q/k/v biases, GQA and odd widths, over several
// chunks. The report says which path ran.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

void expect_staged_equals_recomputed(const std::string& model, const std::vector<std::string>& flags,
                                     const test::ScratchDir& dir, const std::string& name) {
  SCOPED_TRACE(name);
  std::vector<std::string> base = {"quantize", "--model", model, "--calib", kCalib, "--nsamples", "12",
                                   "--seqlen", "64", "--chunk-tokens", "256", "--seed", "4", "--quiet"};
  base.insert(base.end(), flags.begin(), flags.end());
  auto staged = base, recomputed = base;
  staged.insert(staged.end(), {"--out", dir.file(name + "-staged")});
  recomputed.insert(recomputed.end(), {"--out", dir.file(name + "-recomputed"), "--recompute-group-inputs"});
  auto r = test::run_streamq(staged);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_streamq(recomputed);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors"})
    EXPECT_TRUE(test::output_bytes(dir.file(name + "-staged/") + f) ==
                test::output_bytes(dir.file(name + "-recomputed/") + f))
        << f << " differs between staged and recomputed group inputs";
  const auto report = [&](const std::string& d) {
    return nlohmann::json::parse(test::read_all(dir.file(d) + "/streamq_report.json"));
  };
  EXPECT_EQ(report(name + "-staged").at("group_inputs").get<std::string>().rfind("staged", 0), 0u);
  EXPECT_EQ(report(name + "-recomputed").at("group_inputs").get<std::string>().rfind("recomputed", 0), 0u);
}

TEST(StagedStats, SameBytesAsRecomputingEveryGroupsInput) {
  test::ScratchDir dir("staged-stats");
  const std::string stories = test::demo_model_dir();
  // The quantized flow alone (the paper's GPTQ), with act-order.
  expect_staged_equals_recomputed(stories, {"--preset", "gptq-paper", "--group", "32", "--act-order"}, dir, "gptq");
  // Both flows and the cross term (GPTAQ + CAE from X~ X^T).
  expect_staged_equals_recomputed(stories, {"--preset", "gptq-paper", "--method", "gptaq", "--cae", "--cae-source",
                                            "xfx", "--bits", "3", "--group", "32"},
                                  dir, "gptaq-cae");
  // LoaQ's residual terms and token scales on the output projections.
  expect_staged_equals_recomputed(stories, {"--group", "32", "--loaq-norm"}, dir, "defaults-loaq-norm");
  // W4A4KV4 calibration: the quantized flow runs with quantized activations.
  expect_staged_equals_recomputed(stories, {"--group", "32", "--abits", "4", "--kv-bits", "4"}, dir, "a4kv4");

  // Biases, GQA (4 heads over 2), head_dim 12, intermediate 100.
  const std::string qwen = dir.file("qwen");
  auto r = test::run_streamq({"synth", "--out", qwen, "--preset", "qwen2.5-7b", "--hidden", "48", "--intermediate",
                              "100", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--vocab", "600",
                              "--dtype", "f32", "--seed", "9", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_staged_equals_recomputed(qwen, {"--group", "-1"}, dir, "qwen-defaults");
  expect_staged_equals_recomputed(qwen, {"--preset", "gptq-paper"}, dir, "qwen-gptq");
}

// Where the kept chunks would not be planned for, the recompute path runs
// (a host memory limit; disk placement), and says so.
TEST(StagedStats, AHostLimitOrDiskPlacementRecomputes) {
  test::ScratchDir dir("staged-stats-off");
  for (const auto& extra : std::vector<std::vector<std::string>>{{"--host-mem-limit", "8G"}, {"--activations", "disk"}}) {
    std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", dir.file("o"), "--overwrite",
                                  "--calib", kCalib, "--nsamples", "4", "--seqlen", "64", "--quiet"};
    a.insert(a.end(), extra.begin(), extra.end());
    const auto r = test::run_streamq(a);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto rep = nlohmann::json::parse(test::read_all(dir.file("o") + "/streamq_report.json"));
    EXPECT_EQ(rep.at("group_inputs").get<std::string>().rfind("recomputed", 0), 0u) << extra[0];
  }
}

}  // namespace
}  // namespace streamq
