// GGUF export of stories260K: the file read back through streamq's GGUF
// reader (which undoes llama.cpp's q/k permutation) equals the fake-quant
// model tensor for tensor, eval of the .gguf prints the fake-quant numbers,
// `quantize --format gguf` writes the same file, and flags that contradict
// the GGUF grid fail with exit 2 naming both flags.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/formats/gguf.h"
#include "io/formats/safetensors.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";
const std::string kValid = test::source_dir() + "/data/tokens/tinystories_valid_tokens.bin";

test::CliResult quantize(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "8", "--seqlen", "64", "--seed", "1", "--quiet"};
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

// Write, read with the reader's HF view (q/k un-permuted), compare: every
// tensor equals the fake-quant one, the linears are in the block type.
void expect_file_is_fake_quant(const std::string& gguf, const std::string& quant_dir, uint32_t qtype) {
  const auto f = GgufFile::open(gguf);
  const auto fq = SafetensorsModel::open(quant_dir);
  EXPECT_EQ(f->architecture(), "llama");
  int in_block_type = 0;
  for (const auto& name : fq->tensor_names()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(f->read_hf_f32(name), fq->read_f32(name));
  }
  for (const auto& t : f->tensors()) in_block_type += t.type == qtype;
  // stories260K: q, k, v, o, gate, up (64 inputs) per block; down_proj has 172 inputs.
  EXPECT_EQ(in_block_type, 6 * 5);
  EXPECT_EQ(f->hf_tensor_names().size(), fq->tensor_names().size());
}

TEST(GgufExport, ExportRoundTripsThroughTheReaderAndEvalsTheSame) {
  struct Case {
    std::string type;
    uint32_t ggml;
    std::vector<std::string> flags;
  };
  const std::vector<Case> cases = {
      {"Q4_0", ggml_type::Q4_0, {"--bits", "4", "--group", "32", "--sym", "--method", "gptq", "--grid", "mse"}},
      {"Q8_0", ggml_type::Q8_0, {"--bits", "8", "--group", "32", "--sym", "--grid-style", "gptq"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.type);
    test::ScratchDir dir("gguf-export");
    const auto q = quantize(dir.file("q"), c.flags);
    ASSERT_EQ(q.exit_code, 0) << q.err;
    const auto r = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("m.gguf"), "--format",
                                      "gguf", "--gguf-type", c.type});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_file_is_fake_quant(dir.file("m.gguf"), dir.file("q"), c.ggml);
    const std::string a = eval_numbers(dir.file("q")), b = eval_numbers(dir.file("m.gguf"));
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a, b);
  }
}

TEST(GgufExport, ExportRefusesAQuantizeOutputOffTheGrid) {
  test::ScratchDir dir("gguf-export-bad");
  ASSERT_EQ(quantize(dir.file("q"), {"--bits", "4", "--group", "32", "--asym"}).exit_code, 0);
  auto r = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("m.gguf"), "--format", "gguf",
                              "--gguf-type", "Q4_0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--asym"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--gguf-type Q4_0"), std::string::npos) << r.err;
  r = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("m.gguf"), "--format", "gguf"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--gguf-type"), std::string::npos) << r.err;
  r = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("m.gguf"), "--format", "gguf",
                         "--gguf-type", "Q5_K"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--gguf-type 'Q5_K'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("m.gguf")));
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".partial-"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace streamq
