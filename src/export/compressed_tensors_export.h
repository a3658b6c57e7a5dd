// `streamq export --format compressed-tensors`: a streamq quantize output ->
// the compressed-tensors "pack-quantized" checkpoint (weight_packed,
// weight_scale, weight_shape, weight_zero_point when asymmetric, weight_g_idx
// with group act-order) that the compressed-tensors package decompresses and
// vLLM runs on its WNA16 kernels. Layout, loader sources and which linears
// stay dense: docs/compressed-tensors-format.md.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace streamq {

struct CompressedTensorsExportOptions {
  uint64_t max_shard_bytes = 5ull << 30;  // larger outputs are sharded with an index
  bool overwrite = false;                 // export_compressed_tensors only: replace an existing --out
};

struct CompressedTensorsExportReport {
  std::string quant_dir, out_dir;
  int bits = 0;
  int64_t group = -1;
  bool sym = true;
  std::string actorder;             // "group", "static" or "" (none)
  std::vector<std::string> packed;  // modules written as weight_packed + weight_scale + ...
  struct Excluded {
    std::string module, reason;
  };
  std::vector<Excluded> excluded;  // quantized by streamq, written dense (fake-quant weight), in `ignore`
  std::vector<std::string> ignore;  // quantization_config.ignore: excluded modules and lm_head
  std::vector<std::string> files;   // safetensors files written, relative to out_dir
  std::vector<std::string> notes;   // e.g. scales kept in float32 because the model dtype cannot hold them
  nlohmann::json to_json() const;
};

constexpr const char* kCompressedTensorsExportReportName = "streamq_export.json";

// Writes the checkpoint of quant_dir into the existing directory dest_dir
// (side files are the caller's to copy first; config.json is written from
// quant_dir's). Throws InputError naming the file and tensor for anything a
// loader would misread; dest_dir must not be quant_dir.
CompressedTensorsExportReport write_compressed_tensors_checkpoint(const std::string& quant_dir,
                                                                  const std::string& dest_dir,
                                                                  const CompressedTensorsExportOptions& opts,
                                                                  std::ostream* log);

// Staged and atomic: writes into `<out_dir>.partial-<pid>` (side files copied
// from quant_dir) and renames it to out_dir only when complete.
CompressedTensorsExportReport export_compressed_tensors(const std::string& quant_dir, const std::string& out_dir,
                                                        const CompressedTensorsExportOptions& opts,
                                                        std::ostream* log);

}  // namespace streamq
