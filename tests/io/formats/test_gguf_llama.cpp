// The HF view of a synthetic llama GGUF (2 layers, GQA, a mix of tensor
// types): name mapping, shapes, the q/k RoPE permutation undone (checked
// against an independent numpy-style reshape in both directions), the
// config streamq's own parser accepts, conversion to an HF directory, and
// mapping errors.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "io/formats/gguf.h"
#include "src/model/gguf_convert.h"
#include "io/formats/safetensors.h"
#include "src/model/config.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using test::GgufBuilder;

constexpr int64_t kHidden = 64, kHeads = 4, kKvHeads = 2, kHeadDim = 16, kInter = 96, kLayers = 2, kVocab = 40;

struct Options {
  bool tied = true;
  std::string skip;          // a GGUF tensor left out
  std::string extra;         // an extra (unmappable) tensor
  std::string arch = "llama";
  uint32_t kv_heads = kKvHeads;
  int64_t embd_rows = kVocab;  // token_embd rows (a wrong value breaks the shape check)
  uint32_t block_count = kLayers;  // llama.block_count as the header states it
};

// Options with one field changed: `opts([](Options& o) { o.tied = false; })`.
template <class F>
Options opts(F set) {
  Options o;
  set(o);
  return o;
}

struct TinyLlama {
  GgufBuilder builder;
  std::vector<std::string> hf_order;
  std::map<std::string, std::vector<float>> hf;  // expected values in HF layout
};

std::vector<std::string> tiny_tokens() {
  std::vector<std::string> t = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra>"};
  for (char c = 'a'; c <= 'z'; ++c) t.emplace_back(1, c);
  for (const char* s : {"\xc4\xa0", "ab", "\xc4\xa0" "a", "ba", "abc", "\xc4\xa0" "ab", "0", "1", "2", "\xc3\xa9"})
    t.emplace_back(s);
  return t;
}

TinyLlama make_tiny_llama(uint64_t seed, const Options& o = {}) {
  std::mt19937_64 rng(seed);
  TinyLlama m;
  GgufBuilder& b = m.builder;
  b.kv_str("general.architecture", o.arch).kv_str("general.name", "tiny");
  b.kv_u32("llama.embedding_length", kHidden).kv_u32("llama.feed_forward_length", kInter);
  b.kv_u32("llama.block_count", o.block_count).kv_u32("llama.attention.head_count", kHeads);
  b.kv_u32("llama.attention.head_count_kv", o.kv_heads).kv_u32("llama.context_length", 256);
  b.kv_f32("llama.rope.freq_base", 500000.0f).kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
  b.kv_u32("llama.rope.dimension_count", kHeadDim).kv_u32("llama.vocab_size", kVocab);
  std::vector<int32_t> types(kVocab, 1);
  types[0] = types[1] = types[2] = 3;
  types[3] = 4;
  b.kv_str("tokenizer.ggml.model", "gpt2").kv_str("tokenizer.ggml.pre", "smollm");
  b.kv_str_array("tokenizer.ggml.tokens", tiny_tokens()).kv_i32_array("tokenizer.ggml.token_type", types);
  b.kv_str_array("tokenizer.ggml.merges", {"a b", "\xc4\xa0 a", "b a", "ab c", "\xc4\xa0 ab"});
  b.kv_u32("tokenizer.ggml.bos_token_id", 1).kv_u32("tokenizer.ggml.eos_token_id", 2);

  // `rope_heads` > 0: the tensor is a q/k projection stored permuted.
  const auto add = [&](const std::string& gguf, const std::string& hf, uint32_t type, int64_t rows, int64_t cols,
                       int64_t rope_heads) {
    if (gguf == o.skip) return;
    const std::vector<uint64_t> ne = cols ? std::vector<uint64_t>{uint64_t(cols), uint64_t(rows)}
                                          : std::vector<uint64_t>{uint64_t(rows)};
    test::RandomTensor t = test::random_gguf_tensor(type, rows * std::max<int64_t>(cols, 1), rng);
    std::vector<float> hf_values = t.values;
    if (rope_heads && type == ggml_type::F32) {
      // Build it the way convert_hf_to_gguf.py does: HF weights, permuted on the way in.
      const std::vector<float> gguf_order =
          test::swap_axes_12(t.values, rope_heads, 2, rows / rope_heads / 2, cols);
      t.bytes = test::f32_bytes(gguf_order);
    } else if (rope_heads) {
      // Quantized: the stored (permuted) rows are what they are; HF is the inverse reshape.
      hf_values = test::swap_axes_12(t.values, rope_heads, rows / rope_heads / 2, 2, cols);
    }
    b.tensor(gguf, ne, type, t.bytes);
    m.hf_order.push_back(hf);
    m.hf[hf] = hf_values;
  };
  add("token_embd.weight", "model.embed_tokens.weight", ggml_type::F16, o.embd_rows, kHidden, 0);
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string g = "blk." + std::to_string(l) + ".", h = "model.layers." + std::to_string(l) + ".";
    add(g + "attn_norm.weight", h + "input_layernorm.weight", ggml_type::F32, kHidden, 0, 0);
    add(g + "attn_q.weight", h + "self_attn.q_proj.weight", ggml_type::Q4_1, kHeads * kHeadDim, kHidden, kHeads);
    add(g + "attn_k.weight", h + "self_attn.k_proj.weight", ggml_type::F32, kKvHeads * kHeadDim, kHidden, kKvHeads);
    add(g + "attn_v.weight", h + "self_attn.v_proj.weight", ggml_type::Q8_0, kKvHeads * kHeadDim, kHidden, 0);
    add(g + "attn_output.weight", h + "self_attn.o_proj.weight", ggml_type::BF16, kHidden, kHeads * kHeadDim, 0);
    add(g + "ffn_norm.weight", h + "post_attention_layernorm.weight", ggml_type::F32, kHidden, 0, 0);
    add(g + "ffn_gate.weight", h + "mlp.gate_proj.weight", ggml_type::Q4_0, kInter, kHidden, 0);
    add(g + "ffn_up.weight", h + "mlp.up_proj.weight", ggml_type::F32, kInter, kHidden, 0);
    add(g + "ffn_down.weight", h + "mlp.down_proj.weight", ggml_type::Q4_1, kHidden, kInter, 0);
  }
  add("output_norm.weight", "model.norm.weight", ggml_type::F32, kHidden, 0, 0);
  if (!o.tied) add("output.weight", "lm_head.weight", ggml_type::Q8_0, kVocab, kHidden, 0);
  if (!o.extra.empty()) b.tensor(o.extra, {32}, ggml_type::F32, std::string(128, '\0'));
  return m;
}

std::string write_model(const test::ScratchDir& dir, const TinyLlama& m) {
  const std::string path = dir.file("tiny.gguf");
  test::write_all(path, m.builder.bytes());
  return path;
}

TEST(GgufLlama, HfViewMapsNamesShapesValuesAndUndoesRopePermutation) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (STREAMQ_TEST_SEED to replay)");
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "with lm_head");
    const TinyLlama m = make_tiny_llama(seed, opts([&](Options& o) { o.tied = tied; }));
    test::ScratchDir dir("gguf-llama");
    const auto f = GgufFile::open(write_model(dir, m));
    ASSERT_EQ(f->hf_tensor_names(), m.hf_order);
    EXPECT_EQ(f->hf_shape("model.embed_tokens.weight"), (std::vector<int64_t>{kVocab, kHidden}));
    EXPECT_EQ(f->hf_shape("model.layers.1.mlp.down_proj.weight"), (std::vector<int64_t>{kHidden, kInter}));
    EXPECT_EQ(f->hf_shape("model.layers.0.self_attn.k_proj.weight"), (std::vector<int64_t>{32, kHidden}));
    EXPECT_EQ(f->hf_shape("model.norm.weight"), (std::vector<int64_t>{kHidden}));
    for (const auto& name : m.hf_order) EXPECT_EQ(f->read_hf_f32(name), m.hf.at(name)) << name;
    EXPECT_THROW(f->read_hf_f32("model.layers.9.mlp.up_proj.weight"), InputError);

    const nlohmann::json c = f->hf_config();
    EXPECT_EQ(c["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
    EXPECT_EQ(c["num_key_value_heads"], kKvHeads);
    EXPECT_EQ(c["rms_norm_eps"].get<double>(), 1e-6);  // the float32 1e-6 written back as its shortest decimal
    EXPECT_EQ(c["rope_theta"].get<double>(), 500000.0);
    EXPECT_EQ(c["tie_word_embeddings"], tied);
    EXPECT_EQ(c["bos_token_id"], 1);
    const ModelConfig mc = parse_model_config(c.dump(), "hf_config");
    EXPECT_EQ(mc.hidden, kHidden);
    EXPECT_EQ(mc.intermediate, kInter);
    EXPECT_EQ(mc.layers, kLayers);
    EXPECT_EQ(mc.heads, kHeads);
    EXPECT_EQ(mc.kv_heads, kKvHeads);
    EXPECT_EQ(mc.head_dim, kHeadDim);
    EXPECT_EQ(mc.vocab, kVocab);
    EXPECT_EQ(mc.max_pos, 256);
    EXPECT_EQ(mc.tie_word_embeddings, tied);
  }
}

TEST(GgufLlama, ConvertsToAnHfDirectoryStreamqReads) {
  const TinyLlama m = make_tiny_llama(7, opts([](Options& o) { o.tied = false; }));
  test::ScratchDir dir("gguf-convert");
  const std::string path = write_model(dir, m);
  const auto f = GgufFile::open(path);
  const std::string out = dir.file("hf");
  const GgufConversion r = gguf_to_hf_dir(path, out, DType::F32);
  EXPECT_EQ(r.tensors, m.hf_order.size());
  EXPECT_TRUE(r.tokenizer_written) << r.tokenizer_note;
  const auto model = SafetensorsModel::open(out);
  EXPECT_EQ(model->tensor_names().size(), m.hf_order.size());
  for (const auto& name : m.hf_order) {
    EXPECT_EQ(model->info(name).shape, f->hf_shape(name)) << name;
    EXPECT_EQ(model->read_f32(name), m.hf.at(name)) << name;
  }
  const ModelConfig mc = load_model_config(out);
  EXPECT_FALSE(mc.tie_word_embeddings);
  EXPECT_EQ(mc.kv_heads, kKvHeads);
  EXPECT_EQ(nlohmann::json::parse(test::read_all(out + "/tokenizer_config.json"))["eos_token"], "<|im_end|>");

  // F16 output holds the values rounded to half; integer dtypes are refused.
  const std::string out16 = dir.file("hf16");
  gguf_to_hf_dir(path, out16, DType::F16);
  const auto model16 = SafetensorsModel::open(out16);
  EXPECT_EQ(model16->info("model.layers.0.mlp.up_proj.weight").dtype, DType::F16);
  const auto up = m.hf.at("model.layers.0.mlp.up_proj.weight");
  const auto up16 = model16->read_f32("model.layers.0.mlp.up_proj.weight");
  for (std::size_t i = 0; i < up.size(); ++i) ASSERT_EQ(up16[i], f16_to_f32(f32_to_f16(up[i])));
  EXPECT_THROW(gguf_to_hf_dir(path, dir.file("bad"), DType::I32), InputError);
}

void expect_open_error(const TinyLlama& m, const std::vector<std::string>& needles) {
  test::ScratchDir dir("gguf-llama-bad");
  const std::string path = write_model(dir, m);
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "opened; expected an error mentioning '" << needles.front() << "'";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "missing '" << n << "' in: " << msg;
  }
}

TEST(GgufLlama, IncompleteOrInconsistentModelsFailNamingTheTensor) {
  expect_open_error(make_tiny_llama(1, opts([](Options& o) { o.skip = "blk.1.ffn_up.weight"; })),
                    {"missing tensor 'blk.1.ffn_up.weight'", "model.layers.1.mlp.up_proj.weight"});
  expect_open_error(make_tiny_llama(1, opts([](Options& o) { o.extra = "rope_freqs.weight"; })),
                    {"'rope_freqs.weight'", "llama3 RoPE"});
  expect_open_error(make_tiny_llama(1, opts([](Options& o) { o.extra = "blk.0.attn_q_norm.weight"; })),
                    {"'blk.0.attn_q_norm.weight' has no HF Llama equivalent"});
  expect_open_error(make_tiny_llama(1, opts([](Options& o) { o.kv_heads = 3; })),
                    {"head_count 4 is not a multiple of head_count_kv 3"});
  expect_open_error(make_tiny_llama(1, opts([](Options& o) { o.embd_rows = 41; })), {"llama.vocab_size 40", "41"});
  // A block count past what the tensors can hold is refused before any loop
  // over it (fuzz_gguf: 33,554,433 layers in a 17 KB file hung the mapping).
  expect_open_error(make_tiny_llama(1, opts([](Options& o) { o.block_count = 33554433; })),
                    {"llama.block_count 33554433 needs 9 tensors per layer"});

  // Another architecture opens (the container is fine) but has no HF view.
  const TinyLlama other = make_tiny_llama(1, opts([](Options& o) { o.arch = "gpt2"; }));
  test::ScratchDir dir("gguf-arch");
  const auto f = GgufFile::open(write_model(dir, other));
  EXPECT_EQ(f->architecture(), "gpt2");
  EXPECT_EQ(f->tensors().size(), other.hf_order.size());
  try {
    f->hf_tensor_names();
    ADD_FAILURE() << "HF view of a gpt2 GGUF";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("only 'llama'"), std::string::npos) << e.what();
  }
}

// Corrupting the header of a llama GGUF (hyper-parameters, tokenizer, tensor
// infos) fails with InputError or still yields a consistent view: never a
// crash or another exception type.
TEST(GgufLlama, RandomHeaderCorruptionFailsCleanly) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (STREAMQ_TEST_SEED to replay)");
  std::mt19937_64 rng(seed);
  const std::string full = make_tiny_llama(seed).builder.bytes();
  test::ScratchDir dir("gguf-llama-fuzz");
  const std::string path = dir.file("tiny.gguf");
  const std::size_t header = full.size() / 8;  // metadata and tensor infos come first; data is the rest
  for (int iter = 0; iter < 200; ++iter) {
    std::string bytes = full;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) bytes[rng() % header] = static_cast<char>(rng());
    test::write_all(path, bytes);
    try {
      const auto f = GgufFile::open(path);
      if (f->architecture() != "llama") continue;
      (void)f->hf_config().dump();
      for (const auto& name : f->hf_tensor_names()) (void)f->read_hf_f32(name);
      (void)gguf_tokenizer_to_hf_json(f->tokenizer(), path);
    } catch (const InputError&) {
    }
  }
}

TEST(GgufTokenizer, ByteLevelBpeToHfJson) {
  const TinyLlama m = make_tiny_llama(3);
  test::ScratchDir dir("gguf-tok");
  const auto f = GgufFile::open(write_model(dir, m));
  GgufTokenizer tok = f->tokenizer();
  EXPECT_EQ(tok.model, "gpt2");
  EXPECT_EQ(tok.pre, "smollm");
  EXPECT_EQ(tok.tokens, tiny_tokens());
  EXPECT_EQ(tok.bos_id, 1);
  EXPECT_EQ(tok.eos_id, 2);
  EXPECT_EQ(tok.unk_id, -1);

  const auto j = nlohmann::json::parse(gguf_tokenizer_to_hf_json(tok, "tiny.gguf"));
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["vocab"].size(), static_cast<std::size_t>(kVocab));
  EXPECT_EQ(j["model"]["vocab"]["\xc4\xa0" "ab"], 35);
  EXPECT_EQ(j["model"]["merges"][4], "\xc4\xa0 ab");
  ASSERT_EQ(j["added_tokens"].size(), 4u);
  EXPECT_EQ(j["added_tokens"][2]["content"], "<|im_end|>");
  EXPECT_EQ(j["added_tokens"][2]["special"], true);
  EXPECT_EQ(j["added_tokens"][3]["special"], false);  // user-defined
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
  EXPECT_TRUE(j["post_processor"].is_null());  // add_bos is false

  tok.add_bos = true;
  const auto with_bos = nlohmann::json::parse(gguf_tokenizer_to_hf_json(tok, "tiny.gguf"));
  EXPECT_EQ(with_bos["post_processor"]["single"][0]["SpecialToken"]["id"], "<|im_start|>");
  EXPECT_EQ(with_bos["post_processor"]["special_tokens"]["<|im_start|>"]["ids"][0], 1);

  tok.pre = "llama-bpe";
  EXPECT_EQ(nlohmann::json::parse(gguf_tokenizer_to_hf_json(tok, "x"))["model"]["ignore_merges"], true);
  tok.pre = "deepseek-coder";
  EXPECT_THROW(gguf_tokenizer_to_hf_json(tok, "x"), InputError);
  tok.pre = "smollm";
  tok.tokens[5] = tok.tokens[4];
  EXPECT_THROW(gguf_tokenizer_to_hf_json(tok, "x"), InputError);  // duplicate token
  tok.tokens = tiny_tokens();
  tok.tokens[7] = "\xff";
  EXPECT_THROW(gguf_tokenizer_to_hf_json(tok, "x"), InputError);  // not UTF-8
  tok.model = "llama";
  try {
    gguf_tokenizer_to_hf_json(tok, "x.gguf");
    ADD_FAILURE() << "SentencePiece converted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("x.gguf: tokenizer.ggml.model 'llama'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace streamq
