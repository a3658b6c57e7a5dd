// A flow is computed only when the method reads it (MethodNeeds): plain GPTQ
// runs the quantized flow alone, with the bytes it has when the FP flow runs
// beside it, and says so in its report; a one-flow job resumes from its
// workdir to the same bytes.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "src/methods/method.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

std::vector<std::string> gptq_args(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "16", "--seqlen", "128", "--chunk-tokens", "512", "--seed", "11",
                                "--method", "gptq", "--bits", "3", "--group", "32", "--act-order", "--quiet"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

void expect_same_outputs(const std::string& ref, const std::string& got, const std::string& context) {
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors", "config.json"})
    EXPECT_TRUE(test::output_bytes(ref + "/" + f) == test::output_bytes(got + "/" + f)) << context << ": " << f << " differs";
}

nlohmann::json report_of(const std::string& out) {
  return nlohmann::json::parse(test::read_all(out + "/streamq_report.json"));
}

TEST(MethodFlows, EveryMethodDeclaresTheFlowsItReads) {
  QuantConfig gptq;
  EXPECT_FALSE(make_method(gptq)->needs().fp_flow);
  QuantConfig rtn;
  rtn.method = MethodKind::Rtn;
  EXPECT_FALSE(make_method(rtn)->needs().fp_flow);
  QuantConfig gptaq;
  gptaq.method = MethodKind::Gptaq;
  EXPECT_TRUE(make_method(gptaq)->needs().fp_flow);
  QuantConfig two_stage;
  two_stage.clip = ClipSearch::TwoStage;  // its scale refinement aims at W X~
  EXPECT_TRUE(make_method(two_stage)->needs().fp_flow);
  LoaqConfig loaq;
  loaq.enabled = true;
  const MethodNeeds n = make_method({gptq, loaq})->needs();
  EXPECT_TRUE(n.fp_flow);
  EXPECT_TRUE(n.residual);
  EXPECT_FALSE(n.token_scales);
  loaq.norm = true;
  loaq.beta = 0;  // no residual term: E would be weighted by 0
  const MethodNeeds nn = make_method({rtn, loaq})->needs();
  EXPECT_TRUE(nn.token_scales);
  EXPECT_FALSE(nn.residual);
}

// LoaQ with alpha = beta = 0 quantizes W itself (its target W + 0 H^-1 is W
// to the bit) but reads the FP flow: the same GPTQ with and without the FP
// flow computed beside it.
TEST(MethodFlows, PlainGptqRunsTheQuantizedFlowAloneWithUnchangedBytes) {
  test::ScratchDir dir("method-flows");
  const std::string plain = dir.file("plain"), both = dir.file("both");
  auto r = test::run_streamq(gptq_args(plain, {}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_streamq(gptq_args(both, {"--loaq", "--loaq-alpha", "0", "--loaq-beta", "0"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_outputs(both, plain, "gptq without the FP flow vs with it");
  EXPECT_EQ(report_of(plain).at("flows"), nlohmann::json({"quant"}));
  EXPECT_EQ(report_of(both).at("flows"), nlohmann::json({"fp", "quant"}));
}

// A workdir job that never stores the FP flow: killed after two blocks,
// resumed from its one-flow boundary on disk, the bytes of a plain run.
TEST(MethodFlows, OneFlowWorkdirResumesToTheSameBytes) {
  test::ScratchDir dir("method-flows-resume");
  const std::string ref = dir.file("ref"), out = dir.file("out"), wd = dir.file("wd");
  auto r = test::run_streamq(gptq_args(ref, {}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* activations : {"disk", "memory"}) {
    SCOPED_TRACE(activations);
    const std::vector<std::string> extra = {"--workdir", wd, "--activations", activations, "--overwrite"};
    r = test::run_streamq_with("STREAMQ_TEST_KILL_AT=drop:2", gptq_args(out, extra));
    ASSERT_EQ(r.exit_code, 137) << r.err;
    bool quant_chunks = false;
    for (const auto& e : fs::directory_iterator(wd + "/acts")) {
      const std::string name = e.path().filename().string();
      EXPECT_EQ(name.find(".fp."), std::string::npos) << "an FP chunk was stored: " << name;
      quant_chunks = quant_chunks || name.find(".quant.") != std::string::npos;
    }
    EXPECT_TRUE(quant_chunks) << "no boundary left to resume from";
    r = test::run_streamq(gptq_args(out, extra));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_outputs(ref, out, std::string("resumed, ") + activations);
    const auto rep = report_of(out);
    EXPECT_EQ(rep.at("resumed_at_block"), 2);
    EXPECT_EQ(rep.at("flows"), nlohmann::json({"quant"}));
    fs::remove_all(wd);
  }
}

}  // namespace
}  // namespace streamq
