// A decoder-only model's hyper-parameters, parsed from HF `config.json`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace streamq {

enum class Architecture { Llama, Mistral, Qwen2, Qwen3 };

struct RopeScaling {
  std::string type;  // "" (none) or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture arch = Architecture::Llama;
  std::string arch_name;  // as written in config.json, e.g. "LlamaForCausalLM"
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;  // config's head_dim, else hidden / heads
  int64_t vocab = 0;
  int64_t max_pos = 0;
  double rms_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2 always; Llama if attention_bias)
  bool o_bias = false;          // o_proj bias (Llama's attention_bias covers it too)
  bool mlp_bias = false;
  bool qk_norm = false;  // Qwen3: per-head RMSNorm on q and k before RoPE
  // Mistral / Qwen2 (use_sliding_window) attention window; 0 = full attention.
  // Sequences no longer than it are unaffected, so it is recorded, not applied.
  int64_t sliding_window = 0;
  // A checkpoint `streamq quantize --rotate/--online-hadamard` wrote
  // (config.json "streamq_rotation", src/pipeline/model_rotation.h): its
  // weights carry the rotation already. rotation: "" (a plain model),
  // "none", "hadamard" or "random"; online_hadamard: down_proj's weight
  // carries QuaRot's online Hadamard on its input side, so its forward must
  // apply the transform to down_proj's input (stock loaders do not).
  std::string rotation;
  bool online_hadamard = false;
  // o_proj's weight carries the online Hadamard of heads * head_dim on its
  // input side ("online_hadamard_o_proj"; checkpoints written before it
  // existed have online_hadamard alone), so the forward must apply the
  // transform to the attention output.
  bool online_hadamard_o_proj = false;
  // v_proj/o_proj carry QuaRot's per-head R2; the forward rotates queries
  // and keys per head (R3) before the KV cache is quantized.
  bool head_hadamard = false;
};

// Parses and validates `<dir>/config.json`. Unknown architectures and missing or
// inconsistent fields throw InputError naming the file and field; the message
// for an unknown architecture lists the supported ones.
ModelConfig load_model_config(const std::string& model_dir);
ModelConfig parse_model_config(const std::string& json_text, const std::string& source_name);

// cos/sin tables [max_pos, head_dim/2] for HF's RoPE, including llama3 scaling
// of the inverse frequencies.
void build_rope_tables(const ModelConfig& cfg, int64_t max_pos, std::vector<float>* cos,
                       std::vector<float>* sin);

}  // namespace streamq
