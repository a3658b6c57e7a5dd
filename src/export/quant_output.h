// A streamq quantize output (the fake-quant model.safetensors plus
// streamq_quant.safetensors with codes, scales, zeros and g_idx per linear),
// opened and checked for the exporters that pack it into another format
// (compressed-tensors, GGUF): every linear's grid is read back and the
// fake-quant weight must equal what a loader reconstructs from it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/core/dtype.h"
#include "src/methods/quant_config.h"

namespace streamq {

class SafetensorsFile;
class SafetensorsModel;

struct QuantLinearInfo {
  std::string prefix;  // model.layers.3.mlp.down_proj
  std::string rel;     // mlp.down_proj: the name inside its block
  int64_t out = 0, in = 0, ngroups = 1;
};

// One linear's grid as streamq stored it, checked.
struct QuantLinearData {
  std::vector<uint8_t> codes;   // [out, in], each <= 2^bits - 1
  std::vector<float> scales;    // [ngroups, out], positive fp16 values
  std::vector<float> zeros;     // [ngroups, out]: integer zero points, or the fp16 min of a free-min grid
  std::vector<int32_t> g_idx;   // [in]
  bool trivial_g_idx = true;    // g_idx[i] == i / group_size
  DType weight_dtype = DType::F32;  // dtype of the fake-quant weight
};

class QuantOutput {
 public:
  // Throws InputError naming the file when quant_dir is not a quantize output.
  explicit QuantOutput(const std::string& quant_dir);
  ~QuantOutput();

  const std::string& dir() const { return dir_; }
  const QuantConfig& quant() const { return quant_; }
  const nlohmann::json& settings() const { return settings_; }  // recorded_settings of the quant file
  const nlohmann::json& config() const { return config_; }  // config.json
  const std::vector<QuantLinearInfo>& linears() const { return linears_; }
  const SafetensorsModel& model() const { return *model_; }  // the fake-quant checkpoint
  const SafetensorsFile& quant_file() const { return *qfile_; }

  // Reads and checks one linear: codes in range, scales positive fp16 values,
  // zero points integers in [0, maxq] (2^(bits-1) when symmetric), or fp16
  // mins for free-min grids, g_idx groups in range, and the fake-quant weight
  // equal to the grid's dequantized value in its dtype. Throws InputError
  // naming the file, tensor and element; `what` names the target format.
  QuantLinearData read(const QuantLinearInfo& l, const std::string& what) const;

 private:
  std::string dir_;
  QuantConfig quant_;
  nlohmann::json settings_;
  nlohmann::json config_;
  std::vector<QuantLinearInfo> linears_;
  std::unique_ptr<SafetensorsFile> qfile_;
  std::unique_ptr<SafetensorsModel> model_;
};

// The metadata key of a streamq quantize output's safetensors files that holds
// every effective setting as JSON (QuantizeReport::settings: preset, method
// with LoaQ, calibration, format); the exports carry it into their metadata.
inline constexpr const char* kSettingsMetadataKey = "streamq_settings";
// The settings a file records; null when it has none (outputs older than the
// key). InputError naming the file when the value is not a JSON object.
nlohmann::json recorded_settings(const SafetensorsFile& f);

// The value a float tensor of `dtype` holds for v.
float through_dtype_f32(float v, DType dtype);

// The in-block name of a module (model.layers.3.mlp.down_proj -> mlp.down_proj).
std::string block_relative_name(const std::string& prefix);

}  // namespace streamq
