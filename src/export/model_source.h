// What --model may name: an HF model directory, a GPTQ or compressed-tensors checkpoint directory
// (config.json quantization_config.quant_method "gptq", e.g. streamq export's
// output) or a GGUF file; the last two are first converted (dequantized, one
// tensor at a time) into a temporary HF directory.
#pragma once

#include <iosfwd>
#include <string>

namespace streamq {

class ModelSource {
 public:
  // `scratch_parent`: where a GGUF's or GPTQ checkpoint's converted directory may be created
  // (removed by the destructor).
  ModelSource(const std::string& model, const std::string& scratch_parent, std::ostream* log);
  ~ModelSource();
  ModelSource(const ModelSource&) = delete;
  ModelSource& operator=(const ModelSource&) = delete;

  // The HF model directory to read.
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::string temp_;  // non-empty when we created it
};

}  // namespace streamq
