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

// Under --host-mem-limit the group inputs are kept where the plan's peak
// plus their bytes fits the limit (and counted in the plan, which still
// bounds the measured peak), else the block is rerun up to each group, and
// the report says why; --activations disk without a limit recomputes too.
TEST(StagedStats, KeptUnderAHostLimitWhereTheyFitElseRecomputed) {
  test::ScratchDir dir("staged-stats-limit");
  auto job = [&](const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", dir.file(name),
                                  "--calib", kCalib, "--nsamples", "64", "--seqlen", "256", "--method", "gptq",
                                  "--quiet"};
    a.insert(a.end(), extra.begin(), extra.end());
    const auto r = test::run_streamq(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(test::read_all(dir.file(name) + "/streamq_report.json"));
  };
  const auto roomy = job("roomy", {"--host-mem-limit", "8G"});
  EXPECT_EQ(roomy.at("group_inputs").get<std::string>().rfind("staged", 0), 0u) << roomy.at("group_inputs");
  const uint64_t estimate = roomy.at("memory").at("estimated_peak_bytes").get<uint64_t>();
  // 64 x 256 tokens of stories260K (hidden 64, intermediate 172) in each flow
  // the method reads (the defaults' LoaQ reads both): 15.1 MiB a flow.
  const uint64_t staged_bytes = 16384ull * (64 + 172) * 4 * roomy.at("flows").size();
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)  // their shadow memory is counted in RSS too
  EXPECT_LE(roomy.at("peak_rss_bytes").get<uint64_t>(), estimate);
#endif
  // The same plan with half the kept inputs' room: they no longer fit.
  const uint64_t tight_limit = estimate - staged_bytes / 2;
  const auto tight = job("tight", {"--host-mem-limit", std::to_string(tight_limit)});
  const std::string why = tight.at("group_inputs").get<std::string>();
  EXPECT_EQ(why.rfind("recomputed", 0), 0u) << why;
  EXPECT_NE(why.find("would pass --host-mem-limit"), std::string::npos) << why;
  // The kept inputs were in the estimate: the rest of the plan is the same,
  // up to the baseline RSS each run measures before its job (kilobytes apart).
  EXPECT_NEAR(static_cast<double>(tight.at("memory").at("estimated_peak_bytes").get<uint64_t>()),
              static_cast<double>(estimate - staged_bytes), 1 << 20);
  EXPECT_TRUE(test::output_bytes(dir.file("roomy/") + "model.safetensors") ==
              test::output_bytes(dir.file("tight/") + "model.safetensors"));
  const auto disk = job("disk", {"--activations", "disk"});
  EXPECT_NE(disk.at("group_inputs").get<std::string>().find("--activations disk"), std::string::npos)
      << disk.at("group_inputs");
}

}  // namespace
}  // namespace streamq
