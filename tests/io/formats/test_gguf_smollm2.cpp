// The GGUF reader on a real model: SmolLM2-135M-Instruct.Q4_1.gguf (30
// layers, GQA 9/3, Q4_1 linears, Q8_0 embeddings, tied lm_head), fetched once
// by scripts/fetch-smollm2.sh into a cache outside the repository. Values are
// compared exactly with tests/data/gguf/smollm2_golden.safetensors, written by
// llama.cpp's own gguf Python package (tests/fixtures/make_gguf_fixture.py). Without
// network or Python the tests print "SKIPPED: ..." and skip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "io/formats/gguf.h"
#include "io/formats/safetensors.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// The cached model's path, fetching it on first use; "" (with the reason in
// `why`) when it cannot be had. STREAMQ_SMOLLM2_GGUF overrides the fetch.
std::string smollm2_path(std::string* why) {
  if (const char* p = std::getenv("STREAMQ_SMOLLM2_GGUF")) return p;
  const std::string cmd = test::source_dir() + "/scripts/fetch-smollm2.sh 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) {
    *why = "cannot run " + cmd;
    return "";
  }
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int status = ::pclose(pipe);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const std::string last = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  if (status != 0 || !std::filesystem::is_regular_file(last)) {
    *why = "scripts/fetch-smollm2.sh failed (no network or pip?): " + out;
    return "";
  }
  return last;
}

class Smollm2Gguf : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    const std::string path = smollm2_path(&why);
    if (path.empty()) skip_reason_ = new std::string(why);
    else file_ = GgufFile::open(path).release();
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  void SetUp() override {
    if (!file_) {
      std::printf("SKIPPED: SmolLM2 GGUF unavailable: %s\n", skip_reason_->c_str());
      GTEST_SKIP() << "SmolLM2 GGUF unavailable: " << *skip_reason_;
    }
  }
  static const GgufFile& f() { return *file_; }

 private:
  static inline GgufFile* file_ = nullptr;
  static inline std::string* skip_reason_ = nullptr;
};

TEST_F(Smollm2Gguf, ParsesWithTheExpectedHyperParameters) {
  EXPECT_EQ(f().version(), 3u);
  EXPECT_EQ(f().alignment(), kGgufDefaultAlignment);
  EXPECT_EQ(f().tensors().size(), 272u);
  EXPECT_EQ(f().architecture(), "llama");
  const nlohmann::json c = f().hf_config();
  EXPECT_EQ(c["num_hidden_layers"], 30);
  EXPECT_EQ(c["hidden_size"], 576);
  EXPECT_EQ(c["intermediate_size"], 1536);
  EXPECT_EQ(c["num_attention_heads"], 9);
  EXPECT_EQ(c["num_key_value_heads"], 3);  // GQA
  EXPECT_EQ(c["head_dim"], 64);
  EXPECT_EQ(c["vocab_size"], 49152);
  EXPECT_EQ(c["max_position_embeddings"], 8192);
  EXPECT_EQ(c["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ(c["rope_theta"].get<double>(), 100000.0);
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["bos_token_id"], 1);
  EXPECT_EQ(c["eos_token_id"], 2);
}

TEST_F(Smollm2Gguf, MappingIsCompleteAndShapesMatchTheConfig) {
  const auto names = f().hf_tensor_names();
  EXPECT_EQ(names.size(), 1u + 30u * 9u + 1u);  // embeddings, 9 per layer, final norm; lm_head tied
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  EXPECT_EQ(f().hf_shape("model.embed_tokens.weight"), (std::vector<int64_t>{49152, 576}));
  for (int l : {0, 29}) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    EXPECT_EQ(f().hf_shape(p + "self_attn.q_proj.weight"), (std::vector<int64_t>{576, 576}));
    EXPECT_EQ(f().hf_shape(p + "self_attn.k_proj.weight"), (std::vector<int64_t>{192, 576}));
    EXPECT_EQ(f().hf_shape(p + "self_attn.v_proj.weight"), (std::vector<int64_t>{192, 576}));
    EXPECT_EQ(f().hf_shape(p + "mlp.down_proj.weight"), (std::vector<int64_t>{576, 1536}));
    EXPECT_EQ(f().hf_shape(p + "post_attention_layernorm.weight"), (std::vector<int64_t>{576}));
  }
  EXPECT_EQ(std::count(names.begin(), names.end(), "lm_head.weight"), 0);
}

TEST_F(Smollm2Gguf, EveryTensorDequantizesToFiniteValues) {
  int64_t total = 0;
  for (const std::string& name : f().hf_tensor_names()) {
    const std::vector<float> v = f().read_hf_f32(name);
    int64_t numel = 1;
    for (int64_t d : f().hf_shape(name)) numel *= d;
    ASSERT_EQ(static_cast<int64_t>(v.size()), numel) << name;
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_TRUE(std::isfinite(v[i])) << name << " element " << i;
    total += numel;
  }
  EXPECT_EQ(total, 134515008);  // SmolLM2-135M's parameter count
}

// Exact equality with gguf-py's dequantization and numpy's inverse reshape.
TEST_F(Smollm2Gguf, MatchesTheGgufPyGoldenValuesExactly) {
  const auto golden = SafetensorsFile::open(test::source_dir() + "/tests/data/gguf/smollm2_golden.safetensors");
  EXPECT_EQ(golden->metadata().at("format_version"), "1");
  int checked = 0;
  for (const TensorInfo& t : golden->tensors()) {
    if (t.name.ends_with(".rows")) continue;
    const bool hf = t.name.starts_with("hf.");
    const std::string name = t.name.substr(hf ? 3 : 5);
    SCOPED_TRACE(t.name);
    const TensorInfo* rows_info = golden->find(t.name + ".rows");
    ASSERT_NE(rows_info, nullptr);
    std::vector<int32_t> rows(static_cast<std::size_t>(rows_info->numel()));
    std::memcpy(rows.data(), golden->data(*rows_info), rows_info->nbytes);
    const auto* want = static_cast<const float*>(golden->data(t));
    const GgufTensorInfo* g = f().find_tensor(name);
    ASSERT_TRUE(hf || g != nullptr) << "no tensor " << name;
    const std::vector<float> got = hf ? f().read_hf_f32(name) : f().read_f32(*g);
    const int64_t cols = t.shape[1];
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(got[rows[r] * cols + c], want[r * cols + c]) << "row " << rows[r] << " col " << c;
    ++checked;
  }
  EXPECT_EQ(checked, 8);
}

// The q/k permutation undone by the reader equals numpy's
// reshape(n_head, hd/2, 2, cols).swapaxes(1, 2) of the stored rows.
TEST_F(Smollm2Gguf, RopePermutationMatchesAnIndependentReshape) {
  using Case = std::tuple<const char*, const char*, int>;
  for (const auto& [gguf, hf, heads] : {Case{"blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight", 9},
                                        Case{"blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight", 3}}) {
    SCOPED_TRACE(hf);
    const GgufTensorInfo* t = f().find_tensor(gguf);
    ASSERT_NE(t, nullptr);
    const int64_t rows = t->ne[1], cols = t->ne[0];
    const auto want = test::swap_axes_12(f().read_f32(*t), heads, rows / heads / 2, 2, cols);
    EXPECT_EQ(f().read_hf_f32(hf), want);
    EXPECT_NE(f().read_hf_f32(hf), f().read_f32(*t));  // the permutation is not a no-op
  }
}

// The tokenizer.json written from the embedded tokenizer matches SmolLM2's
// published one in every part that defines tokenization.
TEST_F(Smollm2Gguf, EmbeddedTokenizerMatchesThePublishedTokenizerJson) {
  const GgufTokenizer tok = f().tokenizer();
  EXPECT_EQ(tok.model, "gpt2");
  EXPECT_EQ(tok.pre, "smollm");
  const auto ours = nlohmann::json::parse(gguf_tokenizer_to_hf_json(tok, f().path()));
  const std::string ref_path = test::shared_fixtures_dir() + "/tokenizers/smollm2-135m-instruct/tokenizer.json";
  if (!std::filesystem::exists(ref_path)) {
    std::printf("SKIPPED: %s absent\n", ref_path.c_str());
    GTEST_SKIP() << ref_path << " absent";
  }
  const auto ref = nlohmann::json::parse(test::read_all(ref_path));
  EXPECT_EQ(ours["model"]["vocab"], ref["model"]["vocab"]);
  EXPECT_EQ(ours["model"]["merges"], ref["model"]["merges"]);
  EXPECT_EQ(ours["pre_tokenizer"], ref["pre_tokenizer"]);
  EXPECT_EQ(ours["normalizer"], ref["normalizer"]);
  EXPECT_EQ(ours["post_processor"], ref["post_processor"]);
  EXPECT_EQ(ours["decoder"]["type"], ref["decoder"]["type"]);
  for (const char* k : {"type", "byte_fallback", "fuse_unk", "ignore_merges", "unk_token"})
    EXPECT_EQ(ours["model"][k], ref["model"][k]) << k;
  ASSERT_EQ(ours["added_tokens"].size(), ref["added_tokens"].size());
  for (std::size_t i = 0; i < ref["added_tokens"].size(); ++i)
    for (const char* k : {"id", "content", "special", "normalized"})
      EXPECT_EQ(ours["added_tokens"][i][k], ref["added_tokens"][i][k]) << i << " " << k;
}

}  // namespace
}  // namespace streamq
