// The CLI's contract: exit codes (0 ok, 2 bad input/usage, 1 internal), one-line
// errors naming the flag/file/tensor, --help covering every flag.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/formats/safetensors.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

void expect_error(const test::CliResult& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr lacks '" << needle << "': " << r.err;
  // One line: the message, then the newline.
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

std::vector<std::string> q_args(const std::string& model, const std::string& out, const std::string& calib) {
  return {"quantize", "--preset", "gptq-paper", "--model", model, "--out", out, "--calib", calib, "--nsamples", "4", "--seqlen", "64",
          "--quiet"};
}

TEST(Cli, UsageErrorsExitTwoAndNameTheFlag) {
  test::ScratchDir dir("cli");
  expect_error(test::run_streamq({"frobnicate"}), 2, "unknown command 'frobnicate'");
  expect_error(test::run_streamq({"quantize", "--preset", "gptq-paper", "--out", dir.file("o"), "--calib", kCalib}), 2, "--model");
  expect_error(test::run_streamq({"quantize", "--bogus-flag"}), 2, "bogus-flag");
  auto a = q_args(test::demo_model_dir(), dir.file("o"), kCalib);
  a.insert(a.end(), {"--bits", "9"});
  expect_error(test::run_streamq(a), 2, "--bits");
  a = q_args(test::demo_model_dir(), dir.file("o"), kCalib);
  a.insert(a.end(), {"--method", "awq"});
  expect_error(test::run_streamq(a), 2, "--method");
  a = q_args(test::demo_model_dir(), dir.file("o"), kCalib);
  a.insert(a.end(), {"--tokens-dtype", "int8"});
  expect_error(test::run_streamq(a), 2, "--tokens-dtype");
  expect_error(test::run_streamq({"eval", "--model", test::demo_model_dir()}), 2, "--data");
  expect_error(test::run_streamq({"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", dir.file("o")}), 2,
               "--calib");
  EXPECT_FALSE(std::filesystem::exists(dir.file("o")));
}

// A method parameter without the setting it belongs to used to be accepted
// and ignored (--loaq-alpha without --loaq ran plain GPTQ): now each is an
// error naming both flags, before anything is read or written.
TEST(Cli, AParameterWithoutItsSettingIsAnErrorNamingBoth) {
  test::ScratchDir dir("cli-needs");
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--loaq-alpha", "0.5"}, "--loaq-alpha needs --loaq"},
      {{"--loaq-beta", "0.2"}, "--loaq-beta needs --loaq"},
      {{"--loaq-norm"}, "--loaq-norm needs --loaq"},
      {{"--cae-alpha", "1"}, "--cae-alpha needs --cae"},
      {{"--cae-source", "xfx"}, "--cae-source needs --cae"},
      {{"--gptaq-alpha", "1"}, "--gptaq-alpha needs --method gptaq"},
      {{"--p1-original"}, "--p1-original needs --method gptaq"},
      {{"--scale-refine-iters", "3"}, "--scale-refine-iters needs --grid two-stage"},
      {{"--grid", "mse", "--scale-refine-iters", "3"}, "--scale-refine-iters needs --grid two-stage"},
      {{"--mse-grid", "50"}, "--mse-grid needs --grid mse"},
      {{"--mse-max-shrink", "0.5"}, "--mse-max-shrink needs --grid mse"},
      {{"--mse-norm", "2"}, "--mse-norm needs --grid mse"},
      {{"--static-groups"}, "--static-groups needs --group N (N > 0)"},
      {{"--method", "rtn", "--group", "32", "--static-groups"}, "--static-groups needs --method gptq or gptaq"},
      {{"--method", "rtn", "--act-order"}, "--act-order needs --method gptq or gptaq"},
      {{"--method", "rtn", "--blocksize", "64"}, "--blocksize needs --method gptq or gptaq"},
      {{"--method", "rtn", "--variant", "official"}, "--variant needs --method gptq or gptaq"},
      {{"--method", "rtn", "--percdamp", "0.1"}, "--percdamp needs --method gptq or gptaq, or --loaq"},
      {{"--calib-select", "first"}, "--calib-select needs --calib-samples"},
      {{"--calib-split", "line"}, "--calib-split needs --calib-samples"},
  };
  for (const Case& c : cases) {
    auto a = q_args(test::demo_model_dir(), dir.file("o"), kCalib);
    a.insert(a.end(), c.flags.begin(), c.flags.end());
    expect_error(test::run_streamq(a), 2, c.message);
    // The same flags through `streamq layer` (method flags only).
    if (c.message.find("--calib") == std::string::npos)
      expect_error(test::run_streamq(
                       [&] {
                         std::vector<std::string> l = {"layer", "--preset", "gptq-paper", "--weight", dir.file("w.npy"), "--x",
                                                       dir.file("x.npy"), "--out", dir.file("l")};
                         l.insert(l.end(), c.flags.begin(), c.flags.end());
                         return l;
                       }()),
                   2, c.message);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("o")));
  // Where the setting is there, the same parameters are accepted (the run's
  // own validation passes them): one representative per row's setting.
  for (const std::vector<std::string>& ok : std::vector<std::vector<std::string>>{
           {"--loaq", "--loaq-alpha", "0.5", "--loaq-norm"},
           {"--method", "gptaq", "--cae", "--cae-alpha", "1", "--gptaq-alpha", "1", "--p1-original"},
           {"--grid", "mse", "--mse-grid", "50"},
           {"--grid", "two-stage", "--scale-refine-iters", "2"},
           {"--method", "rtn", "--loaq", "--percdamp", "0.1"},
           {"--group", "32", "--static-groups", "--act-order", "--blocksize", "64"}}) {
    auto a = q_args(test::demo_model_dir(), dir.file("ok"), kCalib);
    a.insert(a.end(), ok.begin(), ok.end());
    const auto r = test::run_streamq(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::filesystem::remove_all(dir.file("ok"));
  }
}

TEST(Cli, BadInputsExitTwoNameTheFileAndLeaveNoOutput) {
  test::ScratchDir dir("cli-input");
  const std::string out = dir.file("out");
  expect_error(test::run_streamq(q_args(dir.file("nope"), out, kCalib)), 2, dir.file("nope"));

  // Calibration text instead of ids.
  test::write_all(dir.file("calib.txt"), std::string(600, 'a') + "\nOnce upon a time.\n");
  expect_error(test::run_streamq(q_args(test::demo_model_dir(), out, dir.file("calib.txt"))), 2, "--calib-text");
  // Text calibration needs the model's tokenizer.json (stories260K ships llama2.c's tok512 instead).
  auto text_args = q_args(test::demo_model_dir(), out, kCalib);
  text_args[8] = dir.file("calib.txt");  // after quantize --preset gptq-paper --model M --out O
  text_args[7] = "--calib-text";
  expect_error(test::run_streamq(text_args), 2, "tokenizer.json");

  // A truncated weight file.
  const std::string trunc = dir.file("trunc");
  std::filesystem::create_directories(trunc);
  std::filesystem::copy(test::demo_model_dir() + "/config.json", trunc);
  std::string bytes = test::read_all(test::demo_model_dir() + "/model.safetensors");
  test::write_all(trunc + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_error(test::run_streamq(q_args(trunc, out, kCalib)), 2, "model.safetensors");

  // A NaN weight: the error names the tensor.
  const std::string nan_dir = dir.file("nan");
  std::filesystem::create_directories(nan_dir);
  std::filesystem::copy(test::demo_model_dir() + "/config.json", nan_dir);
  {
    auto st = SafetensorsFile::open(test::demo_model_dir() + "/model.safetensors");
    const TensorInfo* t = st->find("model.layers.2.mlp.up_proj.weight");
    ASSERT_NE(t, nullptr);
    const float nan = std::nanf("");
    std::memcpy(bytes.data() + t->offset + 4 * 17, &nan, 4);
    test::write_all(nan_dir + "/model.safetensors", bytes);
  }
  expect_error(test::run_streamq(q_args(nan_dir, out, kCalib)), 2, "model.layers.2.mlp.up_proj.weight");

  // Unknown architecture.
  const std::string arch_dir = dir.file("arch");
  std::filesystem::create_directories(arch_dir);
  std::string cfg = test::read_all(test::demo_model_dir() + "/config.json");
  cfg.replace(cfg.find("LlamaForCausalLM"), 16, "GPTNeoXForCausalLM");
  test::write_all(arch_dir + "/config.json", cfg);
  std::filesystem::copy(test::demo_model_dir() + "/model.safetensors", arch_dir);
  expect_error(test::run_streamq(q_args(arch_dir, out, kCalib)), 2, "LlamaForCausalLM");

  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
}

TEST(Cli, RefusesToOverwriteUnlessAsked) {
  test::ScratchDir dir("cli-out");
  const std::string out = dir.file("out");
  std::filesystem::create_directories(out);
  test::write_all(out + "/keep.txt", "mine");
  expect_error(test::run_streamq(q_args(test::demo_model_dir(), out, kCalib)), 2, "--overwrite");
  EXPECT_EQ(test::read_all(out + "/keep.txt"), "mine");
  auto a = q_args(test::demo_model_dir(), out, kCalib);
  a.push_back("--overwrite");
  const auto r = test::run_streamq(a);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out + "/keep.txt"));
  EXPECT_TRUE(std::filesystem::exists(out + "/model.safetensors"));
}

TEST(Cli, HelpExplainsEveryFlag) {
  const auto r = test::run_streamq({"quantize", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--model", "--out", "--calib", "--tokens-dtype", "--nsamples", "--seqlen", "--seed",
                           "--method", "--bits", "--group", "--sym", "--asym", "--grid-style", "--act-order",
                           "--static-groups", "--grid", "--percdamp", "--blocksize", "--report", "--threads",
                           "--quiet", "--overwrite", "--activations"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  for (const char* cmd : {"eval", "inspect"}) {
    const auto h = test::run_streamq({cmd, "--help"});
    EXPECT_EQ(h.exit_code, 0);
    EXPECT_NE(h.out.find("--model"), std::string::npos);
  }
  const auto top = test::run_streamq({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_NE(top.out.find("quantize"), std::string::npos);
}

TEST(Cli, InspectShowsConfigAndTensors) {
  const auto r = test::run_streamq({"inspect", "--model", test::demo_model_dir()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("LlamaForCausalLM"), std::string::npos);
  EXPECT_NE(r.out.find("model.layers.4.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(r.out.find("[64,172]"), std::string::npos);
  EXPECT_NE(r.out.find("48 tensors"), std::string::npos);
}

}  // namespace
}  // namespace streamq
