// Which linears a decoder block has, which of them share an input, and the
// order true-sequential quantization visits them in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/model/config.h"

namespace streamq {

// Sub-layer groups in true-sequential order; the linears of a group read the
// same input and share one Hessian.
enum class SubLayer { Qkv = 0, O = 1, GateUp = 2, Down = 3 };
constexpr int kNumSubLayers = 4;
const char* to_string(SubLayer s);

struct LinearDesc {
  std::string name;  // relative to the block, e.g. "self_attn.q_proj"
  SubLayer group;
  int64_t out = 0, in = 0;
  bool has_bias = false;
};

// The linears of one block, in true-sequential order.
std::vector<LinearDesc> block_linears(const ModelConfig& cfg);
// Input width of a sub-layer group.
int64_t sublayer_in_features(const ModelConfig& cfg, SubLayer s);
// "model.layers.<b>."
std::string block_prefix(int64_t block);

}  // namespace streamq
