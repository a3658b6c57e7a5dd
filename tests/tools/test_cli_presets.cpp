// --preset: what the method flags not given default to, per output format,
// and the record of every effective setting (report and checkpoint metadata).
// The quality claim behind `best` is bench/defaults_table.sh's (3 seeds per
// cell); these tests hold what each preset sets and that it is recorded.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/formats/safetensors.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

std::vector<std::string> args(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "4", "--seqlen", "64", "--bits", "4", "--group", "32"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

nlohmann::json report_settings(const std::string& out) {
  const nlohmann::json r = nlohmann::json::parse(test::read_all(out + "/streamq_report.json"));
  return r.at("settings");
}

nlohmann::json metadata_settings(const std::string& file) {
  const auto f = SafetensorsFile::open(file);
  const auto it = f->metadata().find("streamq_settings");
  if (it == f->metadata().end()) return nullptr;
  return nlohmann::json::parse(it->second);
}

TEST(CliPresets, DefaultIsBestAndEveryEffectiveSettingIsRecorded) {
  test::ScratchDir dir("presets-best");
  const auto r = test::run_streamq(args(dir.file("q"), {}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Said on stderr: what the preset set, in flags a user can type.
  EXPECT_NE(r.err.find("preset best: --loaq --grid two-stage --act-order --asym"), std::string::npos) << r.err;
  const nlohmann::json s = report_settings(dir.file("q"));
  EXPECT_EQ(s.at("preset"), "best");
  const nlohmann::json& q = s.at("method").at("quant");
  EXPECT_EQ(q.at("method"), "gptq");
  EXPECT_EQ(q.at("clip"), "two-stage");
  EXPECT_EQ(q.at("act_order"), true);
  EXPECT_EQ(q.at("sym"), false);
  EXPECT_EQ(q.at("bits"), 4);
  EXPECT_EQ(q.at("group"), 32);
  EXPECT_EQ(s.at("method").at("loaq").at("enabled"), true);
  EXPECT_EQ(s.at("calibration").at("nsamples"), 4);
  EXPECT_EQ(s.at("calibration").at("seqlen"), 64);
  EXPECT_EQ(s.at("calibration").at("tokens"), kCalib);
  EXPECT_EQ(s.at("format"), "fake");
  // The checkpoint carries the same record: both safetensors files.
  EXPECT_EQ(metadata_settings(dir.file("q") + "/streamq_quant.safetensors"), s);
  EXPECT_EQ(metadata_settings(dir.file("q") + "/model.safetensors"), s);
  // streamq inspect shows the record.
  const auto in = test::run_streamq({"inspect", "--model", dir.file("q")});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  EXPECT_NE(in.out.find("streamq settings " + s.dump()), std::string::npos) << in.out;
  // ... and what is exported from it.
  const auto e = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("ct"), "--format",
                                    "compressed-tensors", "--quiet"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const nlohmann::json ct = nlohmann::json::parse(test::read_all(dir.file("ct") + "/config.json"));
  EXPECT_EQ(ct.at("quantization_config").at("streamq").at("settings"), s);
  // Two-stage groups are fixed in column order: actorder static, no g_idx.
  EXPECT_EQ(ct.at("quantization_config").at("config_groups").at("group_0").at("weights").at("actorder"), "static");
}

TEST(CliPresets, GptqFormatStaysSymmetricAndRecordsTheSettingsInMeta) {
  test::ScratchDir dir("presets-gptq");
  const auto r = test::run_streamq(args(dir.file("g"), {"--format", "gptq"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("preset best: --loaq --grid two-stage --act-order (symmetric"), std::string::npos) << r.err;
  const nlohmann::json s = report_settings(dir.file("g"));
  EXPECT_EQ(s.at("method").at("quant").at("sym"), true);
  const nlohmann::json c = nlohmann::json::parse(test::read_all(dir.file("g") + "/config.json"));
  EXPECT_EQ(c.at("quantization_config").at("sym"), true);
  EXPECT_EQ(c.at("quantization_config").at("meta").at("streamq_settings"), s);
}

TEST(CliPresets, GptqPaperIsThePlainPaperAndFlagsGivenWin) {
  test::ScratchDir dir("presets-paper");
  auto r = test::run_streamq(args(dir.file("p"), {"--preset", "gptq-paper"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("preset best"), std::string::npos) << r.err;
  nlohmann::json s = report_settings(dir.file("p"));
  EXPECT_EQ(s.at("preset"), "gptq-paper");
  EXPECT_EQ(s.at("method").at("quant").at("clip"), "minmax");
  EXPECT_EQ(s.at("method").at("quant").at("act_order"), false);
  EXPECT_EQ(s.at("method").at("quant").at("sym"), true);
  EXPECT_EQ(s.at("method").at("loaq").at("enabled"), false);

  // Flags given override the preset's values, the rest stay the preset's.
  r = test::run_streamq(args(dir.file("b"), {"--sym", "--grid", "mse"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("preset best: --loaq --act-order\n"), std::string::npos) << r.err;
  s = report_settings(dir.file("b"));
  EXPECT_EQ(s.at("method").at("quant").at("clip"), "mse");
  EXPECT_EQ(s.at("method").at("quant").at("sym"), true);
  EXPECT_EQ(s.at("method").at("quant").at("act_order"), true);
  EXPECT_EQ(s.at("method").at("loaq").at("enabled"), true);

  // A parameter of a setting the preset turned on is meaningful, not an error.
  r = test::run_streamq(args(dir.file("a"), {"--loaq-alpha", "0.25", "--scale-refine-iters", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  s = report_settings(dir.file("a"));
  EXPECT_EQ(s.at("method").at("loaq").at("alpha"), 0.25);
  EXPECT_EQ(s.at("method").at("quant").at("scale_refine_iters"), 2);
}

TEST(CliPresets, RtnGetsNoActOrderAndSaysSo) {
  test::ScratchDir dir("presets-rtn");
  const auto r = test::run_streamq(args(dir.file("r"), {"--method", "rtn"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("not --act-order: rtn has no column order"), std::string::npos) << r.err;
  const nlohmann::json s = report_settings(dir.file("r"));
  EXPECT_EQ(s.at("method").at("quant").at("method"), "rtn");
  EXPECT_EQ(s.at("method").at("quant").at("act_order"), false);
  EXPECT_EQ(s.at("method").at("loaq").at("enabled"), true);
}

TEST(CliPresets, GgufTypesGetTheirGrid) {
  test::ScratchDir dir("presets-gguf");
  // Q4_1's free fp16 min: min-max grid, act-order with static groups.
  auto r = test::run_streamq(args(dir.file("q41"), {"--format", "gguf", "--gguf-type", "Q4_1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("preset best: --loaq --grid minmax --act-order --static-groups\n"), std::string::npos) << r.err;
  nlohmann::json q = report_settings(dir.file("q41")).at("method").at("quant");
  EXPECT_EQ(q.at("free_min"), true);
  EXPECT_EQ(q.at("static_groups"), true);
  // The GGUF file carries the record too (streamq.settings), shown by inspect.
  const auto in = test::run_streamq({"inspect", "--model", dir.file("q41") + "/model.gguf"});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  EXPECT_NE(in.out.find("streamq settings " + report_settings(dir.file("q41")).dump()), std::string::npos) << in.out;
  // Q4_0: symmetric by the type, two-stage with act-order (fixed groups).
  r = test::run_streamq(args(dir.file("q40"), {"--format", "gguf", "--gguf-type", "Q4_0"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  q = report_settings(dir.file("q40")).at("method").at("quant");
  EXPECT_EQ(q.at("sym"), true);
  EXPECT_EQ(q.at("clip"), "two-stage");
  EXPECT_EQ(q.at("act_order"), true);
}

// With quantized activations the preset's method is GPTAQ+CAE with SDE (the
// lowest measured W4A4 setting, bench/RESULTS.md); a method or LoaQ given, or
// --learn given, keeps the user's choice.
TEST(CliPresets, QuantizedActivationsGetGptaqCaeWithSde) {
  test::ScratchDir dir("presets-w4a4");
  auto r = test::run_streamq(args(dir.file("w"), {"--abits", "4"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("preset best: --method gptaq --cae --grid mse --act-order --asym --learn sde --cl-lambda 0\n"),
            std::string::npos)
      << r.err;
  nlohmann::json s = report_settings(dir.file("w"));
  const nlohmann::json& q = s.at("method").at("quant");
  EXPECT_EQ(q.at("method"), "gptaq");
  EXPECT_EQ(q.at("cae"), true);
  EXPECT_EQ(q.at("clip"), "mse");
  EXPECT_EQ(q.at("act_order"), true);
  EXPECT_EQ(q.at("sym"), false);
  EXPECT_EQ(s.at("method").at("loaq").at("enabled"), false);
  EXPECT_EQ(s.at("method").at("learn").at("kind"), "sde");
  EXPECT_EQ(s.at("method").at("learn").at("cl_lambda"), 0.0);
  // Every effective setting is the measured row's (bench/learn_tables.sh
  // "GPTAQ+CAE asym +SDE": the paper's preset plus these flags).
  r = test::run_streamq(args(dir.file("row"), {"--abits", "4", "--preset", "gptq-paper", "--method", "gptaq", "--cae",
                                               "--grid", "mse", "--act-order", "--asym", "--learn", "sde",
                                               "--cl-lambda", "0"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json row = report_settings(dir.file("row"));
  row.erase("preset");
  s.erase("preset");
  EXPECT_EQ(row, s);

  // A learning parameter is meaningful once the preset turned learning on,
  // and --cl-lambda given wins.
  r = test::run_streamq(args(dir.file("b"), {"--abits", "4", "--sde-band", "8", "--cl-lambda", "0.05"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("--asym --learn sde\n"), std::string::npos) << r.err;
  s = report_settings(dir.file("b"));
  EXPECT_EQ(s.at("method").at("learn").at("band"), 8);
  EXPECT_EQ(s.at("method").at("learn").at("cl_lambda"), 0.05);

  // --learn none: the method stays, learning does not run.
  r = test::run_streamq(args(dir.file("n"), {"--abits", "4", "--learn", "none"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("preset best: --method gptaq --cae --grid mse --act-order --asym\n"), std::string::npos)
      << r.err;
  EXPECT_EQ(report_settings(dir.file("n")).at("method").at("learn").at("kind"), "none");

  // A method given: the weight-only setting (LoaQ two-stage), no learning.
  r = test::run_streamq(args(dir.file("m"), {"--abits", "4", "--method", "gptq"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("preset best: --loaq --grid two-stage --act-order --asym\n"), std::string::npos) << r.err;
  EXPECT_EQ(report_settings(dir.file("m")).at("method").at("learn").at("kind"), "none");

  // --format gptq: the same setting on the symmetric grid.
  r = test::run_streamq(args(dir.file("g"), {"--abits", "4", "--format", "gptq"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("preset best: --method gptaq --cae --grid mse --act-order --learn sde --cl-lambda 0 (symmetric"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(report_settings(dir.file("g")).at("method").at("quant").at("sym"), true);

  // Weight-only, no learning from the preset: a learning parameter alone is still an error.
  r = test::run_streamq(args(dir.file("x"), {"--sde-band", "8"}));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--sde-band needs --learn sde"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
}

TEST(CliPresets, UnknownPresetIsAnErrorAndHelpListsThem) {
  test::ScratchDir dir("presets-bad");
  const auto r = test::run_streamq(args(dir.file("x"), {"--preset", "fastest"}));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--preset 'fastest': expected best or gptq-paper"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
  for (const char* cmd : {"quantize", "layer"}) {
    const auto h = test::run_streamq({cmd, "--help"});
    EXPECT_EQ(h.exit_code, 0);
    // The help wraps its text: compare with runs of whitespace as one space.
    std::string flat;
    for (char c : h.out)
      if (!std::isspace(static_cast<unsigned char>(c))) flat += c;
      else if (!flat.empty() && flat.back() != ' ') flat += ' ';
    for (const char* part : {"--preset arg (=best)", "best (the default:", "gptq-paper (the GPTQ paper's plain settings"})
      EXPECT_NE(flat.find(part), std::string::npos) << cmd << " --help lacks " << part;
  }
}

}  // namespace
}  // namespace streamq
