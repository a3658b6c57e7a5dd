// ModelConfig parsing for each supported family, the errors for what is not
// supported, and the RoPE tables (llama3 scaling checked against hand values).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/model/config.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using nlohmann::json;

// Runs `fn`, expects InputError, and checks every fragment is in its message.
template <typename Fn>
void expect_input_error(Fn fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    for (const auto& frag : fragments) EXPECT_NE(std::string(e.what()).find(frag), std::string::npos)
        << "message '" << e.what() << "' lacks '" << frag << "'";
  }
}

// A small Llama config; tests edit copies of it.
json llama_json() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "hidden_act": "silu", "tie_word_embeddings": true, "attention_bias": false, "mlp_bias": false})");
}

TEST(Config, DemoModel) {
  const ModelConfig c = load_model_config(test::demo_model_dir());
  EXPECT_EQ(c.arch, Architecture::Llama);
  EXPECT_EQ(c.arch_name, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.intermediate, 172);
  EXPECT_EQ(c.layers, 5);
  EXPECT_EQ(c.heads, 8);
  EXPECT_EQ(c.kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab, 512);
  EXPECT_EQ(c.max_pos, 512);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias || c.o_bias || c.mlp_bias || c.qk_norm);
}

TEST(Config, Qwen2HasQkvBiasOnly) {
  const ModelConfig c = parse_model_config(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "rope_scaling": null, "hidden_act": "silu",
    "tie_word_embeddings": true, "sliding_window": 32768, "use_sliding_window": false})",
                                           "qwen2/config.json");
  EXPECT_EQ(c.arch, Architecture::Qwen2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window is false
}

TEST(Config, Qwen3HasQkNormAndOwnHeadDim) {
  const ModelConfig c = parse_model_config(R"({
    "architectures": ["Qwen3ForCausalLM"], "hidden_size": 1024, "intermediate_size": 3072,
    "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 151936, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000, "rope_scaling": null, "hidden_act": "silu", "attention_bias": false,
    "tie_word_embeddings": true})",
                                           "qwen3/config.json");
  EXPECT_EQ(c.arch, Architecture::Qwen3);
  EXPECT_EQ(c.head_dim, 128);  // 16 * 128 != 1024, and that is fine
  EXPECT_EQ(c.hidden, 1024);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias || c.o_bias);
  EXPECT_EQ(c.kv_heads, 8);
}

TEST(Config, FallsBackToModelTypeAndDefaults) {
  json j = llama_json();
  j.erase("architectures");
  j["model_type"] = "mistral";
  j.erase("num_key_value_heads");
  j.erase("max_position_embeddings");
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["head_dim"] = nullptr;
  j["sliding_window"] = 4096;
  j["attention_bias"] = true;  // HF's Mistral has no biases whatever this says
  const ModelConfig c = parse_model_config(j.dump(), "mistral/config.json");
  EXPECT_EQ(c.arch, Architecture::Mistral);
  EXPECT_EQ(c.kv_heads, 32);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_pos, 2048);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_FALSE(c.attention_bias || c.o_bias);
}

TEST(Config, LlamaAttentionBiasCoversOutputProjection) {
  json j = llama_json();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  const ModelConfig c = parse_model_config(j.dump(), "llama/config.json");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_TRUE(c.mlp_bias);
}

// A rotated streamq checkpoint's config (docs/rotation.md): each online
// transform is read from its own key, so a checkpoint written before the
// o_proj transform existed (online_hadamard alone) runs without it.
TEST(Config, StreamqRotationNamesEachOnlineTransform) {
  json j = llama_json();
  j["streamq_rotation"] = {{"rotate", "hadamard"}, {"seed", 0}, {"online_hadamard", true}};
  ModelConfig c = parse_model_config(j.dump(), "old/config.json");
  EXPECT_EQ(c.rotation, "hadamard");
  EXPECT_TRUE(c.online_hadamard);
  EXPECT_FALSE(c.online_hadamard_o_proj);
  EXPECT_FALSE(c.head_hadamard);
  j["streamq_rotation"]["online_hadamard_o_proj"] = true;
  j["streamq_rotation"]["head_hadamard"] = true;
  c = parse_model_config(j.dump(), "new/config.json");
  EXPECT_TRUE(c.online_hadamard && c.online_hadamard_o_proj && c.head_hadamard);
  j["streamq_rotation"]["online_hadamard_o_proj"] = "yes";
  expect_input_error([&] { parse_model_config(j.dump(), "bad/config.json"); },
                     {"bad/config.json", "online_hadamard_o_proj", "boolean"});
}

TEST(Config, UnknownArchitectureListsSupported) {
  json j = llama_json();
  j["architectures"] = {"GPT2LMHeadModel"};
  expect_input_error([&] { parse_model_config(j.dump(), "gpt2/config.json"); },
                     {"gpt2/config.json", "'GPT2LMHeadModel' is not supported", "LlamaForCausalLM",
                      "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"});
}

TEST(Config, BadFieldsAreNamed) {
  const auto with = [](const char* key, json value) {
    json j = llama_json();
    if (value.is_discarded()) j.erase(key);
    else j[key] = value;
    return j.dump();
  };
  const json gone = json(json::value_t::discarded);
  expect_input_error([&] { parse_model_config(with("intermediate_size", gone), "m/config.json"); },
                     {"m/config.json", "missing field 'intermediate_size'"});
  expect_input_error([&] { parse_model_config(with("hidden_size", -4), "m/config.json"); },
                     {"m/config.json", "'hidden_size'"});
  expect_input_error([&] { parse_model_config(with("num_hidden_layers", "16"), "m/config.json"); },
                     {"m/config.json", "'num_hidden_layers'"});
  expect_input_error([&] { parse_model_config(with("num_key_value_heads", 5), "m/config.json"); },
                     {"m/config.json", "num_key_value_heads"});
  expect_input_error([&] { parse_model_config(with("hidden_act", "gelu"), "m/config.json"); },
                     {"m/config.json", "hidden_act", "gelu"});
  expect_input_error([&] { parse_model_config(with("head_dim", 7), "m/config.json"); },
                     {"m/config.json", "head_dim 7 is odd"});
  expect_input_error([&] { parse_model_config(with("rms_norm_eps", 0), "m/config.json"); },
                     {"m/config.json", "rms_norm_eps"});
  expect_input_error([&] { parse_model_config("{not json", "m/config.json"); }, {"m/config.json", "JSON"});
  expect_input_error([&] { load_model_config("/nonexistent/streamq-model"); },
                     {"/nonexistent/streamq-model/config.json"});
}

TEST(Config, UnsupportedRopeScalingTypes) {
  for (const char* type : {"linear", "dynamic", "yarn"}) {
    json j = llama_json();
    j["rope_scaling"] = {{"type", type}, {"factor", 2.0}};
    expect_input_error([&] { parse_model_config(j.dump(), "m/config.json"); },
                       {"m/config.json", "unsupported rope_scaling type", type});
  }
  json j = llama_json();
  j["rope_scaling"].erase("factor");
  expect_input_error([&] { parse_model_config(j.dump(), "m/config.json"); }, {"rope_scaling", "'factor'"});
}

TEST(Config, Llama3RopeScalingMatchesHandValues) {
  const ModelConfig c = parse_model_config(llama_json().dump(), "llama3/config.json");
  ASSERT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  ASSERT_EQ(c.head_dim, 64);
  std::vector<float> cos, sin;
  build_rope_tables(c, 4096, &cos, &sin);
  ASSERT_EQ(cos.size(), 4096u * 32);
  // Scaled inverse frequencies worked out by hand (theta 500000, head_dim 64,
  // low/high wavelength bounds 8192 and 2048):
  //  i=2:  wavelen 14.27 < 2048, kept: 500000^(-4/64)
  //  i=16: wavelen 4442.9, smooth = (8192/4442.88 - 1)/3 = 0.28128,
  //        inv * ((1 - smooth)/32 + smooth) = 0.00141421 * 0.303744
  //  i=20: wavelen 22910.6 > 8192, divided by 32: 500000^(-40/64) / 32
  const struct { int i; double inv; } expect[] = {
      {2, 0.44036660267178046}, {16, 0.00042955679655936815}, {20, 8.570255489881478e-06}};
  for (const auto& e : expect) {
    const double angle1 = std::atan2(sin[32 + e.i], cos[32 + e.i]);  // position 1
    EXPECT_NEAR(angle1, e.inv, 1e-6 * e.inv) << "frequency " << e.i;
    const std::size_t at = 3000 * 32 + e.i;  // position 3000
    EXPECT_NEAR(cos[at], std::cos(3000.0 * e.inv), 1e-6) << "frequency " << e.i;
    EXPECT_NEAR(sin[at], std::sin(3000.0 * e.inv), 1e-6) << "frequency " << e.i;
  }
}

TEST(Config, PlainRopeTables) {
  const ModelConfig c = load_model_config(test::demo_model_dir());
  std::vector<float> cos, sin;
  build_rope_tables(c, 16, &cos, &sin);
  ASSERT_EQ(cos.size(), 16u * 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(cos[i], 1.0f);
    EXPECT_EQ(sin[i], 0.0f);
    const double inv = std::pow(10000.0, -2.0 * i / 8.0);
    EXPECT_NEAR(cos[15 * 4 + i], std::cos(15 * inv), 1e-7);
    EXPECT_NEAR(sin[15 * 4 + i], std::sin(15 * inv), 1e-7);
  }
}

}  // namespace
}  // namespace streamq
