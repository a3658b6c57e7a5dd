// `streamq export --format gguf --gguf-type Q4_0|Q4_1|Q8_0`: a streamq
// quantize output of a llama-architecture model, quantized at g32 on the
// type's grid, -> one GGUF v3 file llama.cpp loads: llama.* metadata, the
// q/k row permutation llama.cpp expects, the source model's tokenizer, and
// every quantized linear in the legacy block type holding exactly the codes
// and fp16 scales (and mins) the method optimized. Spec: docs/gguf-export.md.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/methods/quant_config.h"

namespace streamq {

enum class GgufQuantType { Q4_0, Q4_1, Q8_0 };
const char* to_string(GgufQuantType t);
// Throws InputError naming --gguf-type for anything but Q4_0, Q4_1, Q8_0.
GgufQuantType parse_gguf_quant_type(const std::string& s);
// What quantize must use to produce the type's grid: bits, group 32,
// symmetric (Q4_0, Q8_0) or a free fp16 min (Q4_1). Applied to `q`; returns
// "" when q already agreed, else nothing is changed and the conflicting flag
// is named (e.g. "--bits 3").
std::string gguf_grid_conflict(GgufQuantType t, const QuantConfig& q);
void apply_gguf_grid(GgufQuantType t, QuantConfig& q);
// The type whose grid q is (Q8_0 for 8 bits, Q4_1 for a free-min grid, else Q4_0).
GgufQuantType gguf_type_of(const QuantConfig& q);

struct GgufExportOptions {
  GgufQuantType type = GgufQuantType::Q4_0;
  bool overwrite = false;  // replace an existing output file
};

struct GgufExportReport {
  std::string quant_dir, out_file;
  GgufQuantType type = GgufQuantType::Q4_0;
  std::vector<std::string> packed;  // HF names of linears written in the block type
  struct Dense {
    std::string module, reason;
  };
  std::vector<Dense> dense;        // quantized by streamq, written in their float dtype
  std::string tokenizer;           // "gpt2 (pre smollm)", or "none: <why>"
  nlohmann::json to_json() const;
};

// Writes out_file (staged as <out_file>.partial-<pid>, renamed when
// complete). Throws InputError naming the file, tensor or flag when the
// quantize output is not on the type's grid (bits, group, symmetry,
// act-order groups), not a llama model, or inconsistent.
GgufExportReport export_gguf(const std::string& quant_dir, const std::string& out_file, const GgufExportOptions& opts,
                             std::ostream* log);

}  // namespace streamq
