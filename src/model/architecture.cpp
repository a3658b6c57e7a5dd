// Block layout of the supported Llama-family architectures.
#include "src/model/architecture.h"

namespace streamq {

const char* to_string(SubLayer s) {
  switch (s) {
    case SubLayer::Qkv: return "qkv";
    case SubLayer::O: return "o";
    case SubLayer::GateUp: return "gate_up";
    case SubLayer::Down: return "down";
  }
  return "?";
}

std::vector<LinearDesc> block_linears(const ModelConfig& c) {
  const int64_t q_out = c.heads * c.head_dim, kv_out = c.kv_heads * c.head_dim;
  return {
      {"self_attn.q_proj", SubLayer::Qkv, q_out, c.hidden, c.attention_bias},
      {"self_attn.k_proj", SubLayer::Qkv, kv_out, c.hidden, c.attention_bias},
      {"self_attn.v_proj", SubLayer::Qkv, kv_out, c.hidden, c.attention_bias},
      {"self_attn.o_proj", SubLayer::O, c.hidden, q_out, c.o_bias},
      {"mlp.gate_proj", SubLayer::GateUp, c.intermediate, c.hidden, c.mlp_bias},
      {"mlp.up_proj", SubLayer::GateUp, c.intermediate, c.hidden, c.mlp_bias},
      {"mlp.down_proj", SubLayer::Down, c.hidden, c.intermediate, c.mlp_bias},
  };
}

int64_t sublayer_in_features(const ModelConfig& c, SubLayer s) {
  switch (s) {
    case SubLayer::Qkv: case SubLayer::GateUp: return c.hidden;
    case SubLayer::O: return c.heads * c.head_dim;
    case SubLayer::Down: return c.intermediate;
  }
  return 0;
}

std::string block_prefix(int64_t block) { return "model.layers." + std::to_string(block) + "."; }

}  // namespace streamq
