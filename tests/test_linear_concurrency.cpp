// --linear-concurrency: the linears of a sub-layer group quantized as
// concurrent tasks give the same bytes as one at a time, for GPTQ and for
// GPTAQ + CAE (both flows, every statistic), and the report says what ran.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

test::CliResult quantize(const std::string& out, const std::vector<std::string>& method,
                         const std::string& concurrency) {
  std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "16", "--seqlen", "128", "--chunk-tokens", "512", "--seed", "7",
                                "--bits", "3", "--group", "32", "--threads", "2", "--quiet"};
  a.insert(a.end(), method.begin(), method.end());
  if (!concurrency.empty()) a.push_back("--linear-concurrency=" + concurrency);
  return test::run_streamq(a);
}

void expect_same_outputs_across_concurrency(const std::vector<std::string>& method, const std::string& tag) {
  test::ScratchDir dir("linconc-" + tag);
  // "" is the default (0 = auto): unlimited memory gives full concurrency.
  const std::vector<std::pair<std::string, int>> runs = {{"1", 1}, {"", 3}, {"3", 3}, {"2", 2}};
  std::string ref;
  for (const auto& [flag, want] : runs) {
    const std::string out = dir.file("c" + (flag.empty() ? std::string("auto") : flag));
    const auto r = quantize(out, method, flag);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto rep = nlohmann::json::parse(test::read_all(out + "/streamq_report.json"));
    EXPECT_EQ(rep.at("memory").at("linear_concurrency").get<int>(), want) << tag << " " << flag;
    if (ref.empty()) {
      ref = out;
      continue;
    }
    for (const char* f : {"model.safetensors", "streamq_quant.safetensors", "config.json"})
      EXPECT_TRUE(test::read_all(ref + "/" + f) == test::read_all(out + "/" + f))
          << tag << ": " << f << " differs between --linear-concurrency 1 and '" << flag << "'";
  }
}

TEST(LinearConcurrency, GptqOutputsAreByteIdenticalWhateverTheConcurrency) {
  expect_same_outputs_across_concurrency({"--method", "gptq", "--act-order"}, "gptq");
}

TEST(LinearConcurrency, GptaqCaeOutputsAreByteIdenticalWhateverTheConcurrency) {
  expect_same_outputs_across_concurrency({"--method", "gptaq", "--cae"}, "gptaq-cae");
}

TEST(LinearConcurrency, NegativeValueIsRefused) {
  test::ScratchDir dir("linconc-bad");
  const auto r = quantize(dir.file("o"), {}, "-1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--linear-concurrency"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace streamq
