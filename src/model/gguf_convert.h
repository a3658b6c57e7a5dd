// GGUF -> HF model directory, so the rest of streamq reads a GGUF model like
// any HF checkpoint (gguf_convert.cpp).
#pragma once

#include <cstddef>
#include <string>

#include "src/core/dtype.h"

namespace streamq {

struct GgufConversion {
  std::size_t tensors = 0;
  bool tokenizer_written = false;
  std::string tokenizer_note;  // why tokenizer.json was not written, "" when it was
};

// Writes `out_dir` (created if needed) as an HF model directory streamq reads:
// config.json, model.safetensors (one tensor dequantized and written at a time,
// in `out_dtype`, one of F32/F16/BF16; F32 keeps the dequantized values
// exactly) and, when the tokenizer is convertible, tokenizer.json and
// tokenizer_config.json.
GgufConversion gguf_to_hf_dir(const std::string& gguf_path, const std::string& out_dir, DType out_dtype);

}  // namespace streamq
