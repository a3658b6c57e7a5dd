// GGUF export of stories260K: the file read back through streamq's GGUF
// reader (which undoes llama.cpp's q/k permutation) equals the fake-quant
// model tensor for tensor, eval of the .gguf prints the fake-quant numbers,
// `quantize --format gguf` writes the same file, and flags that contradict
// the GGUF grid fail with exit 2 naming both flags.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/formats/gguf.h"
#include "io/formats/safetensors.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";
const std::string kValid = test::source_dir() + "/data/tokens/tinystories_valid_tokens.bin";

test::CliResult quantize(const std::string& out, std::vector<std::string> extra) {
  std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
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

// quantize --format gguf: the type implies bits, group 32 and the grid; the
// file equals `export --format gguf` of the same output; Q4_1's free-min
// grid round-trips through the reader.
TEST(GgufExport, QuantizeFormatGgufWritesTheSameFileAsExport) {
  test::ScratchDir dir("gguf-quantize");
  const auto q = quantize(dir.file("q"), {"--format", "gguf", "--gguf-type", "Q4_1", "--method", "gptq"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  ASSERT_TRUE(fs::exists(dir.file("q/model.gguf")));
  expect_file_is_fake_quant(dir.file("q/model.gguf"), dir.file("q"), ggml_type::Q4_1);
  const auto r = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("x.gguf"), "--format", "gguf",
                                    "--gguf-type", "Q4_1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_all(dir.file("x.gguf")), test::read_all(dir.file("q/model.gguf")));
  EXPECT_EQ(eval_numbers(dir.file("q/model.gguf")), eval_numbers(dir.file("q")));
  // The wrong type for this output is refused.
  const auto w = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("y.gguf"), "--format", "gguf",
                                    "--gguf-type", "Q4_0"});
  EXPECT_EQ(w.exit_code, 2);
  EXPECT_NE(w.err.find("free-min"), std::string::npos) << w.err;
}

TEST(GgufExport, QuantizeRefusesFlagsThatContradictTheGgufGrid) {
  test::ScratchDir dir("gguf-quantize-flags");
  struct Case {
    std::vector<std::string> flags;
    std::string must_name;
  };
  const std::vector<Case> cases = {
      {{"--format", "gguf", "--gguf-type", "Q4_0", "--bits", "3"}, "--bits 3"},
      {{"--format", "gguf", "--gguf-type", "Q8_0", "--bits", "4"}, "--bits 4"},
      {{"--format", "gguf", "--gguf-type", "Q4_0", "--group", "128"}, "--group 128"},
      {{"--format", "gguf", "--gguf-type", "Q4_0", "--asym"}, "--asym"},
      {{"--format", "gguf", "--gguf-type", "Q4_1", "--sym"}, "--sym"},
      {{"--format", "gguf", "--gguf-type", "Q4_0", "--act-order"}, "--act-order"},
      {{"--format", "gguf", "--gguf-type", "Q4_1", "--grid", "two-stage"}, "--grid two-stage"},
      {{"--format", "gguf"}, "--gguf-type"},
      {{"--gguf-type", "Q4_0"}, "--format gguf"},
      {{"--format", "gguf", "--gguf-type", "Q3_K"}, "--gguf-type 'Q3_K'"},
      {{"--format", "compressed-tensors", "--bits", "3"}, "--bits 3"},
  };
  for (const auto& c : cases) {
    std::string label;
    for (const auto& f : c.flags) label += f + " ";
    SCOPED_TRACE(label);
    const auto r = quantize(dir.file("q"), c.flags);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(c.must_name), std::string::npos) << r.err;
    if (c.must_name.rfind("--gguf-type '", 0) != 0 && c.flags.size() > 2 && c.flags[1] == "gguf")
      EXPECT_NE(r.err.find("--gguf-type"), std::string::npos) << r.err;  // names both flags
    EXPECT_FALSE(fs::exists(dir.file("q")));
  }
}

TEST(GgufExport, InspectShowsQuantizationMetadataOfEveryFormat) {
  test::ScratchDir dir("inspect-formats");
  ASSERT_EQ(quantize(dir.file("q"), {"--format", "gguf", "--gguf-type", "Q4_0"}).exit_code, 0);
  auto r = test::run_streamq({"inspect", "--model", dir.file("q/model.gguf")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("file_type MOSTLY_Q4_0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Q4_0"), std::string::npos) << r.out;
  r = test::run_streamq({"inspect", "--model", dir.file("q")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("quantization: streamq quantize output"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("w4 g32 sym"), std::string::npos) << r.out;
  ASSERT_EQ(test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("ct"), "--format",
                               "compressed-tensors"}).exit_code, 0);
  r = test::run_streamq({"inspect", "--model", dir.file("ct")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("quantization: compressed-tensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("format pack-quantized"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("num_bits 4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("weight_packed"), std::string::npos) << r.out;
  ASSERT_EQ(test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("gp")}).exit_code, 0);
  r = test::run_streamq({"inspect", "--model", dir.file("gp")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("quantization: gptq"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bits 4  group_size 32"), std::string::npos) << r.out;
}

TEST(GgufExport, QuantizeFormatCompressedTensorsEqualsQuantizeThenExport) {
  test::ScratchDir dir("ct-quantize");
  ASSERT_EQ(quantize(dir.file("direct"), {"--format", "compressed-tensors", "--bits", "4", "--group", "32", "--asym"})
                .exit_code, 0);
  ASSERT_EQ(quantize(dir.file("q"), {"--bits", "4", "--group", "32", "--asym"}).exit_code, 0);
  ASSERT_EQ(test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("ct"), "--format",
                               "compressed-tensors"}).exit_code, 0);
  EXPECT_EQ(test::read_all(dir.file("direct/model.safetensors")), test::read_all(dir.file("ct/model.safetensors")));
  EXPECT_FALSE(fs::exists(dir.file("direct/streamq_quant.safetensors")));
  EXPECT_EQ(eval_numbers(dir.file("direct")), eval_numbers(dir.file("q")));
}

// tokenizer.json -> tokenizer.ggml.* -> (streamq's GGUF reader) the same
// tokens, merges, token types and pre-tokenizer name.
TEST(GgufExport, TokenizerRoundTripsThroughTheGguf) {
  test::ScratchDir dir("gguf-tokenizer");
  ASSERT_EQ(quantize(dir.file("q"), {"--method", "rtn", "--bits", "4", "--group", "32"}).exit_code, 0);
  GgufTokenizer src;
  src.model = "gpt2";
  src.pre = "smollm";
  src.tokens = {"a", "b", "ab", "<|endoftext|>", "\u0120the"};
  src.token_type = {1, 1, 1, 3, 1};
  src.merges = {"a b"};
  src.eos_id = 3;
  {
    std::ofstream(dir.file("q/tokenizer.json")) << gguf_tokenizer_to_hf_json(src, "test");
  }
  const auto r = test::run_streamq({"export", "--from", dir.file("q"), "--out", dir.file("m.gguf"), "--format", "gguf",
                                    "--gguf-type", "Q4_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("tokenizer gpt2 (pre smollm)"), std::string::npos) << r.err;
  const GgufTokenizer t = GgufFile::open(dir.file("m.gguf"))->tokenizer();
  EXPECT_EQ(t.model, "gpt2");
  EXPECT_EQ(t.pre, "smollm");
  ASSERT_EQ(t.tokens.size(), 512u);  // vocab_size: ids without a token are padding
  for (size_t i = 0; i < src.tokens.size(); ++i) EXPECT_EQ(t.tokens[i], src.tokens[i]);
  EXPECT_EQ(t.tokens[5], "[PAD5]");
  EXPECT_EQ(t.token_type[3], 3);  // control
  EXPECT_EQ(t.token_type[5], 5);  // unused
  EXPECT_EQ(t.merges, src.merges);
  EXPECT_EQ(t.bos_id, 1);  // config.json's bos/eos ids
  EXPECT_EQ(t.eos_id, 2);
}

}  // namespace
}  // namespace streamq
