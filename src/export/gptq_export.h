// `streamq export`: a streamq quantize output (fake-quant model.safetensors +
// streamq_quant.safetensors) -> the packed GPTQ checkpoint vLLM, HF
// transformers (optimum / gptqmodel) and gptqmodel load. The layout, the
// loader sources it follows and the rules for linears the format cannot hold
// are in docs/gptq-format.md.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/methods/quant_config.h"

namespace streamq {

struct GptqExportOptions {
  // Zero-point convention of the written checkpoint. Gptq (classic) stores
  // zero - 1 and refuses a checkpoint whose zero points contain 0.
  CheckpointFormat format = CheckpointFormat::Gptq;
  uint64_t max_shard_bytes = 5ull << 30;  // larger outputs are sharded with an index
  bool overwrite = false;                 // export_gptq only: replace an existing --out
};

struct GptqExportReport {
  std::string quant_dir, out_dir;
  CheckpointFormat format = CheckpointFormat::Gptq;
  int bits = 0;
  int64_t group = -1;
  bool sym = true, desc_act = false;
  std::vector<std::string> packed;  // module names written as qweight/qzeros/scales/g_idx
  struct Excluded {
    std::string module, reason;
  };
  std::vector<Excluded> excluded;  // quantized by streamq, written dense (fake-quant weight)
  std::vector<std::string> files;  // safetensors files written, relative to out_dir
  nlohmann::json to_json() const;
};

// File name of the export report inside the written checkpoint.
constexpr const char* kGptqExportReportName = "streamq_export.json";

// Writes the GPTQ checkpoint of quant_dir (a streamq quantize output) into
// the existing directory dest_dir (e.g. an OutputDir's staging directory):
// model safetensors (sharded past opts.max_shard_bytes), config.json with
// quantization_config, quantize_config.json, and the export report. Side
// files (tokenizer, generation config) are the caller's to copy first:
// config.json is written from quant_dir's. dest_dir must not be quant_dir.
// Throws InputError naming the file and tensor for anything a loader would
// misread (zero point 0 in the classic format, scales that are not fp16
// values, codes out of range, a fake-quant weight that disagrees with its
// codes); nothing is renamed into place in dest_dir before all checks pass.
GptqExportReport write_gptq_checkpoint(const std::string& quant_dir, const std::string& dest_dir,
                                       const GptqExportOptions& opts, std::ostream* log);

// Staged and atomic: writes into `<out_dir>.partial-<pid>` (side files copied
// from quant_dir) and renames it to out_dir only when complete.
GptqExportReport export_gptq(const std::string& quant_dir, const std::string& out_dir, const GptqExportOptions& opts,
                             std::ostream* log);

}  // namespace streamq
