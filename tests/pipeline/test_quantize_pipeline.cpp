// End to end through the CLI on the bundled stories260K: outputs are complete,
// self-consistent and deterministic, and GPTQ does what it should for quality.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "io/formats/safetensors.h"
#include "src/model/architecture.h"
#include "src/model/config.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";
const std::string kValid = test::source_dir() + "/data/tokens/tinystories_valid_tokens.bin";

std::vector<std::string> quantize_args(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "32", "--seqlen", "256", "--seed", "3", "--quiet"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

double eval_ppl(const std::string& model) {
  const auto r = test::run_streamq({"eval", "--model", model, "--data", kValid, "--seqlen", "256", "--windows", "64",
                                    "--quiet"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto pos = r.out.rfind("ppl ");
  EXPECT_NE(pos, std::string::npos) << r.out;
  return std::stod(r.out.substr(pos + 4));
}

TEST(QuantizePipeline, EvalReproducesTheFixtureBaseline) {
  const auto base = nlohmann::json::parse(
      test::read_all(test::shared_fixtures_dir() + "/stories260K/ppl_baseline.json"));
  const double ppl = eval_ppl(test::demo_model_dir());
  // Baseline from numpy float64; our fp32 forward agrees to ~1e-6 relative.
  EXPECT_NEAR(ppl, 4.189796, 5e-5);
  (void)base;
}

TEST(QuantizePipeline, OutputIsCompleteConsistentAndDeterministic) {
  test::ScratchDir dir("pipeline");
  const std::string a = dir.file("a"), b = dir.file("b");
  auto ra = test::run_streamq(quantize_args(a, {"--bits", "3", "--group", "32", "--act-order", "--threads", "2",
                                                "--report", dir.file("report.json")}));
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  // Same job with another thread count and activations on disk: same bytes.
  auto rb = test::run_streamq(quantize_args(b, {"--bits", "3", "--group", "32", "--act-order", "--threads", "1",
                                                "--activations", "disk"}));
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  // And through the pread/pwrite path with another zstd level.
  const std::string c = dir.file("c");
  auto rc = test::run_streamq(quantize_args(c, {"--bits", "3", "--group", "32", "--act-order", "--activations",
                                                "disk", "--io", "posix", "--zstd-level", "5"}));
  ASSERT_EQ(rc.exit_code, 0) << rc.err;
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors"}) {
    EXPECT_TRUE(test::output_bytes(a + "/" + f) == test::output_bytes(b + "/" + f)) << f << " differs between runs";
    EXPECT_TRUE(test::output_bytes(a + "/" + f) == test::output_bytes(c + "/" + f)) << f << " differs with --io posix";
  }
  EXPECT_TRUE(std::filesystem::exists(a + "/config.json"));
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << "left behind: " << e.path();

  // Same tensors, dtypes and shapes as the input; untouched tensors byte-identical.
  auto in = SafetensorsModel::open(test::demo_model_dir());
  auto out = SafetensorsModel::open(a);
  ASSERT_EQ(in->tensor_names(), out->tensor_names());
  const ModelConfig cfg = load_model_config(test::demo_model_dir());
  auto quant = SafetensorsFile::open(a + "/streamq_quant.safetensors");
  int quantized = 0;
  for (const auto& name : in->tensor_names()) {
    const TensorInfo &ti = in->info(name), &to = out->info(name);
    EXPECT_EQ(ti.dtype, to.dtype) << name;
    EXPECT_EQ(ti.shape, to.shape) << name;
    const auto* codes_info = quant->find(name.substr(0, name.size() - 7) + ".codes");
    if (name.size() > 7 && name.substr(name.size() - 7) == ".weight" && codes_info) {
      // Dequantized weights are exactly scale * (code - zero) of the stored results.
      const std::string p = name.substr(0, name.size() - 7);
      const auto* codes = static_cast<const uint8_t*>(quant->data(*codes_info));
      const auto* scales = static_cast<const float*>(quant->data(*quant->find(p + ".scales")));
      const auto* zeros = static_cast<const float*>(quant->data(*quant->find(p + ".zeros")));
      const auto* gidx = static_cast<const int32_t*>(quant->data(*quant->find(p + ".g_idx")));
      const std::vector<float> w = out->read_f32(name);
      const int64_t rows = ti.shape[0], cols = ti.shape[1];
      std::set<int32_t> levels;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t g = gidx[c];
          const double v = double(scales[g * rows + r]) * (double(codes[r * cols + c]) - zeros[g * rows + r]);
          ASSERT_LE(codes[r * cols + c], 7) << name;  // 3 bits
          // Scales are stored as float: 1e-6 relative covers their rounding.
          ASSERT_NEAR(w[r * cols + c], v, 1e-6 * std::fabs(v) + 1e-12) << name << " [" << r << "," << c << "]";
          if (r == 0) levels.insert(codes[c]);
        }
      EXPECT_GT(levels.size(), 3u) << name << " uses almost no levels";
      ++quantized;
    } else {
      EXPECT_TRUE(std::memcmp(in->file_of(name).data(ti), out->file_of(name).data(to), ti.nbytes) == 0) << name;
    }
  }
  EXPECT_EQ(quantized, cfg.layers * 7);

  const auto rep = nlohmann::json::parse(test::read_all(dir.file("report.json")));
  EXPECT_GT(rep["total_seconds"].get<double>(), 0);
  EXPECT_GT(rep["peak_rss_bytes"].get<uint64_t>(), 0u);
  // What the run cost the machine: CPU time and page faults (a quantize
  // allocates and touches megabytes, so both are positive; system time and
  // major faults may be 0 on a warm machine).
  const auto& proc = rep.at("process");
  EXPECT_GT(proc.at("user_seconds").get<double>(), 0);
  EXPECT_GE(proc.at("system_seconds").get<double>(), 0);
  EXPECT_GT(proc.at("minor_page_faults").get<uint64_t>(), 0u);
  EXPECT_GE(proc.at("major_page_faults").get<uint64_t>(), 0u);
  EXPECT_GT(proc.at("cpu_per_wall").get<double>(), 0);
  ASSERT_EQ(rep["blocks"].size(), 5u);
  for (const auto& blk : rep["blocks"]) {
    ASSERT_EQ(blk["linears"].size(), 7u);
    for (const auto& l : blk["linears"]) {
      EXPECT_GT(l["objective"].get<double>(), 0) << l["name"];
      EXPECT_LT(l["relative_objective"].get<double>(), 0.2) << l["name"];
      EXPECT_EQ(l["cholesky_retries"].get<int>(), 0) << l["name"];
      // At least U and the float64 weights: 8 (n^2 + m n) bytes.
      const auto shape = l["shape"];
      const uint64_t m = shape[0], n = shape[1];
      EXPECT_GE(l["working_bytes"].get<uint64_t>(), 8 * (n * n + m * n)) << l["name"];
    }
  }
}

TEST(QuantizePipeline, GptqBeatsRtnAndFourBitStaysNearFp) {
  test::ScratchDir dir("quality");
  const double fp = eval_ppl(test::demo_model_dir());
  double ppl[2];
  int i = 0;
  for (const char* method : {"gptq", "rtn"}) {
    const std::string out = dir.file(method);
    auto r = test::run_streamq(quantize_args(out, {"--method", method, "--bits", "4", "--group", "32"}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ppl[i++] = eval_ppl(out);
  }
  std::cout << "fp " << fp << "  gptq w4g32 " << ppl[0] << "  rtn w4g32 " << ppl[1] << "\n";
  EXPECT_LT(ppl[0], ppl[1]);
  EXPECT_LT(ppl[0], 1.10 * fp);
  EXPECT_GT(ppl[0], fp);  // 4 bits cannot be free on a 260K-parameter model
}

}  // namespace
}  // namespace streamq
