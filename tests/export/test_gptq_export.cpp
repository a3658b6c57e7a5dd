// streamq export end to end on stories260K: the GPTQ checkpoint evaluates
// exactly like the fake-quant model it came from, config.json says what a
// loader needs (and which linears are dense), and bad inputs fail cleanly
// without leaving output behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "src/core/dtype.h"
#include "io/formats/gptq_pack.h"
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

test::CliResult export_dir(const std::string& from, const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"export", "--from", from, "--out", out};
  a.insert(a.end(), extra.begin(), extra.end());
  return test::run_streamq(a);
}

// The eval lines that depend on the model ("mean_nll", "ppl"), verbatim.
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

// Eval of the exported checkpoint (dequantized by streamq's GPTQ reader)
// equals eval of the fake-quant model bit for bit: both hold fp16 scale *
// integer, exact in float32, so the forward passes see identical weights.
struct ExportCase {
  std::vector<std::string> flags;
};

TEST(GptqExport, EvalOfExportEqualsFakeQuantForEveryBitWidth) {
  const std::vector<ExportCase> cases = {
      {{"--bits", "4", "--group", "32", "--asym", "--act-order"}},
      {{"--bits", "3", "--group", "32", "--grid", "mse"}},
      {{"--bits", "2", "--group", "-1", "--asym", "--grid", "two-stage"}},
      {{"--bits", "8", "--group", "32", "--asym", "--checkpoint-format", "gptq_v2"}},
  };
  for (const auto& c : cases) {
    std::string label;
    for (const auto& f : c.flags) label += f + " ";
    SCOPED_TRACE(label);
    test::ScratchDir dir("gptq-export");
    quantize(dir.file("q"), c.flags);
    std::vector<std::string> extra;
    if (label.find("gptq_v2") != std::string::npos) extra = {"--checkpoint-format", "gptq_v2"};
    const auto r = export_dir(dir.file("q"), dir.file("g"), extra);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string fq = eval_numbers(dir.file("q")), gq = eval_numbers(dir.file("g"));
    EXPECT_FALSE(fq.empty());
    EXPECT_EQ(gq, fq);
  }
}

TEST(GptqExport, ConfigPackingAndDenseLinears) {
  test::ScratchDir dir("gptq-export-config");
  quantize(dir.file("q"), {"--bits", "4", "--group", "32", "--asym", "--act-order"});
  const auto r = export_dir(dir.file("q"), dir.file("g"), {"--max-shard-size", "100KB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The MLP of stories260K (intermediate 172) cannot be packed: gate/up have
  // 172 outputs, down_proj 172 inputs. Each is reported.
  EXPECT_NE(r.err.find("dense: model.layers.0.mlp.down_proj"), std::string::npos) << r.err;
  const auto cfg = nlohmann::json::parse(test::read_all(dir.file("g/config.json")));
  const auto& qc = cfg.at("quantization_config");
  EXPECT_EQ(qc.at("quant_method"), "gptq");
  EXPECT_EQ(qc.at("bits"), 4);
  EXPECT_EQ(qc.at("group_size"), 32);
  EXPECT_EQ(qc.at("sym"), false);
  EXPECT_EQ(qc.at("desc_act"), true);
  EXPECT_EQ(qc.at("true_sequential"), true);
  EXPECT_EQ(qc.at("checkpoint_format"), "gptq");
  std::vector<std::string> keep = qc.at("modules_in_block_to_quantize").at(0);
  std::sort(keep.begin(), keep.end());
  EXPECT_EQ(keep, (std::vector<std::string>{"self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj",
                                            "self_attn.v_proj"}));
  EXPECT_TRUE(qc.at("dynamic").contains("-:.*\\.mlp\\.down_proj$"));
  EXPECT_TRUE(qc.at("dynamic").contains("-:.*\\.mlp\\.gate_up_proj$"));
  const auto rep = nlohmann::json::parse(test::read_all(dir.file("g/streamq_export.json")));
  EXPECT_EQ(rep.at("excluded").size(), 15u);  // 3 MLP linears x 5 blocks
  EXPECT_EQ(rep.at("packed").size(), 20u);
  EXPECT_TRUE(fs::exists(dir.file("g/model.safetensors.index.json")));  // sharded at 100 KB
  EXPECT_TRUE(fs::exists(dir.file("g/quantize_config.json")));

  // Tensors: packed layout for attention, the fake-quant weight for the MLP,
  // and the classic zero convention (stored zero - 1).
  const auto g = SafetensorsModel::open(dir.file("g"));
  const auto q = SafetensorsModel::open(dir.file("q"));
  const auto qf = SafetensorsFile::open(dir.file("q/streamq_quant.safetensors"));
  const std::string p = "model.layers.2.self_attn.k_proj";
  EXPECT_FALSE(g->has(p + ".weight"));
  EXPECT_EQ(g->info(p + ".qweight").shape, (std::vector<int64_t>{64 / 32 * 4, 32}));
  EXPECT_EQ(g->info(p + ".qweight").dtype, DType::I32);
  EXPECT_EQ(g->info(p + ".qzeros").shape, (std::vector<int64_t>{2, 32 / 32 * 4}));
  EXPECT_EQ(g->info(p + ".scales").dtype, DType::F16);
  EXPECT_EQ(g->info(p + ".g_idx").shape, (std::vector<int64_t>{64}));
  const TensorInfo& qz = g->info(p + ".qzeros");
  const std::vector<uint8_t> stored =
      gptq_unpack_qzeros(static_cast<const int32_t*>(g->file_of(p + ".qzeros").data(qz)), 2, 32, 4);
  const TensorInfo& tz = *qf->find(p + ".zeros");
  const auto* zeros = static_cast<const float*>(qf->data(tz));
  for (size_t k = 0; k < stored.size(); ++k) ASSERT_EQ(stored[k] + 1, zeros[k]);
  const std::string d = "model.layers.2.mlp.down_proj.weight";
  EXPECT_EQ(g->read_f32(d), q->read_f32(d));
  EXPECT_FALSE(g->has("model.layers.2.mlp.down_proj.qweight"));
}

// Rewrites dir/streamq_quant.safetensors with `meta` as its metadata and
// `mutate` applied to each tensor's bytes.
void rewrite_quant_file(const std::string& dir, const std::map<std::string, std::string>& meta,
                        const std::function<void(const std::string&, std::vector<uint8_t>&)>& mutate) {
  const auto f = SafetensorsFile::open(dir + "/streamq_quant.safetensors");
  std::vector<TensorSpec> plan;
  for (const auto& t : f->tensors()) plan.push_back({t.name, t.dtype, t.shape});
  SafetensorsWriter w(dir, plan, meta, UINT64_MAX, "streamq_quant");
  for (const auto& t : f->tensors()) {
    const auto* b = static_cast<const uint8_t*>(f->data(t));
    std::vector<uint8_t> bytes(b, b + t.nbytes);
    mutate(t.name, bytes);
    w.write(t.name, bytes.data(), bytes.size());
  }
  w.finish();
}

std::map<std::string, std::string> metadata_of(const std::string& dir) {
  return SafetensorsFile::open(dir + "/streamq_quant.safetensors")->metadata();
}

void expect_clean_failure(const test::CliResult& r, const std::string& out, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(leftovers(fs::path(out).parent_path().string()));
}

TEST(GptqExport, BadInputsFailCleanly) {
  test::ScratchDir dir("gptq-export-bad");
  // Not a quantize output.
  expect_clean_failure(export_dir(test::demo_model_dir(), dir.file("g0")), dir.file("g0"),
                       "no streamq_quant.safetensors");
  quantize(dir.file("q"), {"--bits", "4", "--group", "32", "--asym"});
  const auto meta = metadata_of(dir.file("q"));
  auto keep = [](const std::string&, std::vector<uint8_t>&) {};

  fs::copy(dir.file("q"), dir.file("nometa"));
  auto m = meta;
  m.erase("quant_config");
  rewrite_quant_file(dir.file("nometa"), m, keep);
  expect_clean_failure(export_dir(dir.file("nometa"), dir.file("g1")), dir.file("g1"), "no quant_config");

  fs::copy(dir.file("q"), dir.file("badmeta"));
  m = meta;
  m["quant_config"] = "{\"bits\": 4,";
  rewrite_quant_file(dir.file("badmeta"), m, keep);
  expect_clean_failure(export_dir(dir.file("badmeta"), dir.file("g2")), dir.file("g2"), "not valid JSON");

  // A zero point of 0 cannot be stored in the classic format.
  fs::copy(dir.file("q"), dir.file("zero0"));
  rewrite_quant_file(dir.file("zero0"), meta, [](const std::string& name, std::vector<uint8_t>& b) {
    if (name != "model.layers.1.self_attn.o_proj.zeros") return;
    const float z = 0.0f;
    std::memcpy(b.data(), &z, sizeof z);
  });
  expect_clean_failure(export_dir(dir.file("zero0"), dir.file("g3")), dir.file("g3"), "zero point of 0");
  // gptq_v2 could store it, but the fake-quant weight no longer matches.
  expect_clean_failure(export_dir(dir.file("zero0"), dir.file("g4"), {"--checkpoint-format", "gptq_v2"}),
                       dir.file("g4"), "differs from scale * (code - zero)");

  // A scale that is not an fp16 value (a pre-fp16 quantize output).
  fs::copy(dir.file("q"), dir.file("f32scale"));
  rewrite_quant_file(dir.file("f32scale"), meta, [](const std::string& name, std::vector<uint8_t>& b) {
    if (name != "model.layers.0.self_attn.q_proj.scales") return;
    float s = 0;
    std::memcpy(&s, b.data(), sizeof s);
    s = std::nextafter(s, 1.0f);
    std::memcpy(b.data(), &s, sizeof s);
  });
  expect_clean_failure(export_dir(dir.file("f32scale"), dir.file("g5")), dir.file("g5"), "not a positive fp16 value");

  // --from == --out, bad flags.
  const auto same = export_dir(dir.file("q"), dir.file("q"), {"--overwrite"});
  EXPECT_EQ(same.exit_code, 2) << same.err;
  EXPECT_TRUE(fs::exists(dir.file("q/streamq_quant.safetensors")));
  expect_clean_failure(export_dir(dir.file("q"), dir.file("g6"), {"--checkpoint-format", "v3"}), dir.file("g6"),
                       "--checkpoint-format");
}

TEST(GptqExport, HelpExplainsEveryFlag) {
  const auto r = test::run_streamq({"export", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--from", "--out", "--checkpoint-format", "--max-shard-size", "--overwrite", "gptq_v2",
                           "zero - 1"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace streamq

namespace streamq {
namespace {

// `quantize --format gptq` writes the same checkpoint as quantize + export,
// in one command, and with a workdir too.
TEST(GptqExport, QuantizeFormatGptqEqualsQuantizeThenExport) {
  test::ScratchDir dir("gptq-format");
  const std::vector<std::string> flags = {"--bits", "4", "--group", "32", "--asym", "--act-order"};
  quantize(dir.file("fq"), flags);
  ASSERT_EQ(export_dir(dir.file("fq"), dir.file("exported")).exit_code, 0);
  auto direct = flags;
  direct.insert(direct.end(), {"--format", "gptq", "--workdir", dir.file("wd")});
  quantize(dir.file("direct"), direct);
  EXPECT_TRUE(test::read_all(dir.file("exported") + "/model.safetensors") ==
              test::read_all(dir.file("direct") + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir.file("direct") + "/streamq_quant.safetensors"));
  EXPECT_FALSE(fs::exists(dir.file("direct") + "/.fakequant"));
  const auto cfg = nlohmann::json::parse(test::read_all(dir.file("direct") + "/config.json"));
  EXPECT_EQ(cfg.at("quantization_config").at("quant_method"), "gptq");
  const auto rep = nlohmann::json::parse(test::read_all(dir.file("direct") + "/streamq_report.json"));
  EXPECT_FALSE(rep.at("gptq_export").at("excluded").empty());  // stories260K's MLP stays dense
  EXPECT_EQ(eval_numbers(dir.file("direct")), eval_numbers(dir.file("fq")));
  // The finished workdir exports the same checkpoint again.
  ASSERT_EQ(export_dir(dir.file("wd"), dir.file("from-wd")).exit_code, 0);
  EXPECT_TRUE(test::read_all(dir.file("exported") + "/model.safetensors") ==
              test::read_all(dir.file("from-wd") + "/model.safetensors"));
  const auto r = test::run_streamq({"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", dir.file("bad"), "--calib",
                                    kCalib, "--format", "awq", "--quiet"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--format"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace streamq
