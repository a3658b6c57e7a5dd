// Reading compressed-tensors "pack-quantized" checkpoints (streamq's exports
// and other tools' with one config group, docs/compressed-tensors-format.md):
// each packed linear is dequantized into a plain HF model directory, one
// tensor at a time, so eval runs on the model the compressed-tensors
// decompressor reconstructs.
#pragma once

#include <cstdint>
#include <string>

namespace streamq {

// Whether dir/config.json has quantization_config.quant_method == "compressed-tensors".
bool is_compressed_tensors_dir(const std::string& dir);

struct CompressedTensorsImport {
  int64_t linears = 0;  // packed linears dequantized
  int64_t tensors = 0;  // tensors written
};

// Writes out_dir (created): model.safetensors with every packed linear's
// weight_packed/weight_scale/weight_shape[/weight_zero_point/weight_g_idx]
// replaced by `.weight` = scale * (q - zero_point) in the config's torch_dtype,
// everything else copied; config.json without quantization_config; side files
// copied. Integer weights of 1, 2, 4 or 8 bits, group or channel strategy. Throws
// InputError naming the file and tensor for anything else.
CompressedTensorsImport compressed_tensors_to_hf_dir(const std::string& ct_dir, const std::string& out_dir);

}  // namespace streamq
