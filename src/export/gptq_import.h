// Reading GPTQ checkpoints (streamq's own exports and other tools' in the
// same layout, docs/gptq-format.md): each packed linear is dequantized into
// a plain HF model directory, one tensor at a time, so eval (and anything
// else that reads HF directories) runs on the model a GPTQ loader computes.
#pragma once

#include <cstdint>
#include <string>

namespace streamq {

// Whether dir/config.json has quantization_config.quant_method == "gptq".
bool is_gptq_dir(const std::string& dir);

struct GptqImport {
  int64_t linears = 0;  // packed linears dequantized
  int64_t tensors = 0;  // tensors written
};

// Writes out_dir (created): model.safetensors with every packed linear's
// qweight/qzeros/scales/g_idx replaced by its dequantized `.weight`,
// scale * (code - zero) with zero = stored + 1 for checkpoint_format "gptq"
// (the default) and stored for "gptq_v2", in the config's torch_dtype
// (float32 when absent); every other tensor copied; config.json without
// quantization_config; side files copied. Bits 2, 3, 4, 8. Throws InputError
// naming the file and tensor on any inconsistency.
GptqImport gptq_to_hf_dir(const std::string& gptq_dir, const std::string& out_dir);

}  // namespace streamq
