// streamq export --format compressed-tensors end to end on stories260K: the
// checkpoint evaluates exactly like the fake-quant model, its tensors hold
// the codes, scales and zero points of the quantize output in the package's
// layout, config.json says what loaders need, and bad inputs fail cleanly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/formats/safetensors.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";
const std::string kValid = test::source_dir() + "/data/tokens/tinystories_valid_tokens.bin";

void quantize(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "8", "--seqlen", "64", "--seed", "1", "--quiet"};
  a.insert(a.end(), extra.begin(), extra.end());
  const auto r = test::run_streamq(a);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

test::CliResult export_ct(const std::string& from, const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"export", "--from", from, "--out", out, "--format", "compressed-tensors"};
  a.insert(a.end(), extra.begin(), extra.end());
  return test::run_streamq(a);
}

std::string eval_numbers(const std::string& model) {
  const auto r = test::run_streamq({"eval", "--model", model, "--data", kValid, "--seqlen", "64", "--windows", "16",
                                    "--quiet"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string keep;
  size_t pos = 0;
  while (pos < r.out.size()) {
    const size_t nl = r.out.find('\n', pos);
    const std::string line = r.out.substr(pos, nl - pos);
    if (line.rfind("mean_nll ", 0) == 0 || line.rfind("ppl ", 0) == 0) keep += line + "\n";
    pos = nl == std::string::npos ? r.out.size() : nl + 1;
  }
  return keep;
}

bool leftovers(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".partial-") != std::string::npos) return true;
  return false;
}

// fp16 scale * integer is exact in float32, so the dequantized checkpoint is
// the fake-quant model bit for bit and eval prints the same numbers.
TEST(CompressedTensorsExport, EvalOfExportEqualsFakeQuant) {
  const std::vector<std::vector<std::string>> cases = {
      {"--bits", "4", "--group", "32", "--asym", "--act-order"},
      {"--bits", "4", "--group", "32", "--sym", "--grid", "mse"},
      {"--bits", "8", "--group", "-1", "--asym"},
      {"--bits", "2", "--group", "32", "--asym", "--grid", "two-stage"},
  };
  for (const auto& flags : cases) {
    std::string label;
    for (const auto& f : flags) label += f + " ";
    SCOPED_TRACE(label);
    test::ScratchDir dir("ct-export");
    quantize(dir.file("q"), flags);
    const auto r = export_ct(dir.file("q"), dir.file("c"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string fq = eval_numbers(dir.file("q")), cq = eval_numbers(dir.file("c"));
    EXPECT_FALSE(fq.empty());
    EXPECT_EQ(cq, fq);
  }
}

TEST(CompressedTensorsExport, TensorsAndConfigFollowThePackageLayout) {
  test::ScratchDir dir("ct-export-layout");
  quantize(dir.file("q"), {"--bits", "4", "--group", "32", "--asym", "--act-order"});
  const auto r = export_ct(dir.file("q"), dir.file("c"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("dense: model.layers.0.mlp.down_proj"), std::string::npos) << r.err;
  const auto cfg = nlohmann::json::parse(test::read_all(dir.file("c/config.json")));
  const auto& qc = cfg.at("quantization_config");
  EXPECT_EQ(qc.at("quant_method"), "compressed-tensors");
  EXPECT_EQ(qc.at("format"), "pack-quantized");
  EXPECT_EQ(qc.at("quantization_status"), "compressed");
  const auto& w = qc.at("config_groups").at("group_0").at("weights");
  EXPECT_EQ(qc.at("config_groups").at("group_0").at("targets"), nlohmann::json::array({"Linear"}));
  EXPECT_EQ(w.at("num_bits"), 4);
  EXPECT_EQ(w.at("type"), "int");
  EXPECT_EQ(w.at("symmetric"), false);
  EXPECT_EQ(w.at("strategy"), "group");
  EXPECT_EQ(w.at("group_size"), 32);
  EXPECT_EQ(w.at("actorder"), "group");
  std::vector<std::string> ignore = qc.at("ignore");
  EXPECT_EQ(ignore.size(), 16u);  // 3 MLP linears x 5 blocks (intermediate 172), lm_head
  EXPECT_NE(std::find(ignore.begin(), ignore.end(), "lm_head"), ignore.end());
  EXPECT_NE(std::find(ignore.begin(), ignore.end(), "model.layers.2.mlp.up_proj"), ignore.end());

  // q_proj of block 1, word by word against the quantize output.
  const auto ct = SafetensorsModel::open(dir.file("c"));
  const auto qf = SafetensorsFile::open(dir.file("q/streamq_quant.safetensors"));
  const std::string p = "model.layers.1.self_attn.q_proj";
  EXPECT_FALSE(ct->has(p + ".weight"));
  const TensorInfo& tp = ct->info(p + ".weight_packed");
  ASSERT_EQ(tp.dtype, DType::I32);
  ASSERT_EQ(tp.shape, (std::vector<int64_t>{64, 8}));
  const auto* packed = static_cast<const uint32_t*>(ct->file_of(p + ".weight_packed").data(tp));
  const auto* codes = static_cast<const uint8_t*>(qf->data(*qf->find(p + ".codes")));
  for (int o = 0; o < 64; ++o)
    for (int i = 0; i < 64; ++i) ASSERT_EQ((packed[o * 8 + i / 8] >> (4 * (i % 8))) & 15u, codes[o * 64 + i]);
  const TensorInfo& ts = ct->info(p + ".weight_scale");
  ASSERT_EQ(ts.shape, (std::vector<int64_t>{64, 2}));  // [out, in / group]
  EXPECT_EQ(ts.dtype, DType::F32);                      // the model's dtype
  const auto* scales = static_cast<const float*>(ct->file_of(p + ".weight_scale").data(ts));
  const auto* qscales = static_cast<const float*>(qf->data(*qf->find(p + ".scales")));  // [groups, out]
  const auto* qzeros = static_cast<const float*>(qf->data(*qf->find(p + ".zeros")));
  for (int o = 0; o < 64; ++o)
    for (int g = 0; g < 2; ++g) ASSERT_EQ(scales[o * 2 + g], qscales[g * 64 + o]);
  const TensorInfo& tz = ct->info(p + ".weight_zero_point");
  ASSERT_EQ(tz.shape, (std::vector<int64_t>{8, 2}));  // packed along out
  const auto* zp = static_cast<const uint32_t*>(ct->file_of(p + ".weight_zero_point").data(tz));
  for (int o = 0; o < 64; ++o)
    for (int g = 0; g < 2; ++g)
      ASSERT_EQ(static_cast<float>((zp[(o / 8) * 2 + g] >> (4 * (o % 8))) & 15u), qzeros[g * 64 + o]);
  const TensorInfo& tshape = ct->info(p + ".weight_shape");
  const auto* shape = static_cast<const int32_t*>(ct->file_of(p + ".weight_shape").data(tshape));
  EXPECT_EQ(shape[0], 64);
  EXPECT_EQ(shape[1], 64);
  const TensorInfo& tg = ct->info(p + ".weight_g_idx");
  EXPECT_EQ(std::memcmp(ct->file_of(p + ".weight_g_idx").data(tg), qf->data(*qf->find(p + ".g_idx")), tg.nbytes), 0);
  // Symmetric: no zero points, no g_idx without act-order.
  quantize(dir.file("qs"), {"--bits", "8", "--group", "32", "--sym"});
  ASSERT_EQ(export_ct(dir.file("qs"), dir.file("cs")).exit_code, 0);
  const auto cs = SafetensorsModel::open(dir.file("cs"));
  EXPECT_TRUE(cs->has(p + ".weight_packed"));
  EXPECT_FALSE(cs->has(p + ".weight_zero_point"));
  EXPECT_FALSE(cs->has(p + ".weight_g_idx"));
  const auto cfgs = nlohmann::json::parse(test::read_all(dir.file("cs/config.json")));
  EXPECT_TRUE(cfgs.at("quantization_config").at("config_groups").at("group_0").at("weights").at("actorder").is_null());
}

TEST(CompressedTensorsExport, BadInputsFailCleanly) {
  test::ScratchDir dir("ct-export-bad");
  quantize(dir.file("q3"), {"--bits", "3", "--group", "32"});
  auto r = export_ct(dir.file("q3"), dir.file("c3"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("3 bits"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("c3")));
  EXPECT_FALSE(leftovers(dir.path()));
  r = export_ct(dir.file("absent"), dir.file("c4"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("absent"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("c4")));
  quantize(dir.file("q"), {"--bits", "4", "--group", "32"});
  r = export_ct(dir.file("q"), dir.file("c"), {"--checkpoint-format", "gptq_v2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--checkpoint-format"), std::string::npos) << r.err;
  r = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("x"), "--format", "awq"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--format"), std::string::npos) << r.err;
  // A tampered fake-quant weight is caught before anything is renamed into place.
  {
    uint64_t off = 0;
    {
      const auto st = SafetensorsModel::open(dir.file("q"));
      off = st->info("model.layers.0.self_attn.k_proj.weight").offset;
    }
    std::fstream f(dir.file("q/model.safetensors"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(off));
    const float odd = 0.123456f;  // no 4-bit grid value
    f.write(reinterpret_cast<const char*>(&odd), sizeof odd);
  }
  r = export_ct(dir.file("q"), dir.file("c"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("k_proj.weight[0, 0]"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("c")));
  EXPECT_FALSE(leftovers(dir.path()));
}

}  // namespace
}  // namespace streamq
