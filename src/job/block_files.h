// The per-block files of a job and the final checkpoint assembled from them.
// A block file holds what quantizing one block produced: each linear's
// fake-quant weight (in the model's dtype) and its codes/scales/zeros/g_idx.
// The final checkpoint takes every other tensor from the source model, so
// assembling it from block files gives the bytes a direct write would.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/formats/safetensors.h"
#include "src/methods/quant_config.h"
#include "src/methods/quant_result.h"
#include "src/model/config.h"

namespace streamq {

// Which rotations of quantize changed a block's tensors besides the
// linears' weights: the residual one (the two norms, folded to ones, and
// o_proj's and down_proj's biases) and the per-head one (v_proj's bias).
struct RotatedTensors {
  bool residual = false, heads = false;
};
// Tensors of block b's file: the linears' weights and quantization results,
// and the tensors `rotated` names (rotated_block_tensors) in their source
// dtypes.
std::vector<TensorSpec> block_file_plan(const ModelConfig& cfg, const SafetensorsModel& st, const QuantConfig& q,
                                        int64_t b, RotatedTensors rotated = {});
// Those tensors' names inside a block (input_layernorm.weight, ...).
std::vector<std::string> rotated_block_tensors(const ModelConfig& cfg, RotatedTensors rotated);
// Writes one linear's quantization result (codes, scales, zeros, g_idx) under `prefix`.
void write_quant_result(SafetensorsWriter& w, const std::string& prefix, const QuantResult& r);

struct AssembleInput {
  const ModelConfig* cfg = nullptr;
  const SafetensorsModel* source = nullptr;
  QuantConfig quant;
  std::function<std::string(int64_t)> block_path;  // block b's file
  // A rotated job's ends (src/pipeline/rotated_ends.h; "" = none): its
  // tensors replace the source's of the same name, and one the source lacks
  // (the untied lm_head.weight of a tied model) is added.
  std::string ends_path;
  std::map<std::string, std::string> fq_metadata, qr_metadata;
  uint64_t max_shard_bytes = UINT64_MAX;  // of the fake-quant checkpoint
  std::function<void()> on_tensor;        // after each tensor copied (kill points)
};
// Writes `out_dir`/model*.safetensors (the fake-quant checkpoint, same names,
// dtypes and sharding rule as the source) and streamq_quant.safetensors.
void assemble_checkpoint(const AssembleInput& in, const std::string& out_dir);

}  // namespace streamq
