// GGUF-or-directory model inputs.
#include "src/export/model_source.h"

#include <unistd.h>

#include <filesystem>
#include <ostream>

#include "src/core/dtype.h"
#include "io/formats/gguf.h"
#include "src/model/gguf_convert.h"
#include "src/export/compressed_tensors_import.h"
#include "src/export/gptq_import.h"

namespace fs = std::filesystem;

namespace streamq {

ModelSource::ModelSource(const std::string& model, const std::string& scratch_parent, std::ostream* log) {
  std::error_code ec;
  if (is_compressed_tensors_dir(model)) {
    temp_ = (fs::path(scratch_parent.empty() ? "." : scratch_parent) /
             (".streamq-ct-" + std::to_string(::getpid()))).string();
    fs::remove_all(temp_, ec);
    try {
      const CompressedTensorsImport c = compressed_tensors_to_hf_dir(model, temp_);
      if (log)
        *log << "streamq: dequantized compressed-tensors checkpoint " << model << " (" << c.linears
             << " packed linears) to HF layout in " << temp_ << "\n";
    } catch (...) {
      fs::remove_all(temp_, ec);
      throw;
    }
    dir_ = temp_;
    return;
  }
  if (is_gptq_dir(model)) {
    temp_ = (fs::path(scratch_parent.empty() ? "." : scratch_parent) /
             (".streamq-gptq-" + std::to_string(::getpid()))).string();
    fs::remove_all(temp_, ec);
    try {
      const GptqImport g = gptq_to_hf_dir(model, temp_);
      if (log)
        *log << "streamq: dequantized GPTQ checkpoint " << model << " (" << g.linears << " packed linears) to HF layout in "
             << temp_ << "\n";
    } catch (...) {
      fs::remove_all(temp_, ec);  // the destructor does not run for a throwing constructor
      throw;
    }
    dir_ = temp_;
    return;
  }
  if (!(fs::is_regular_file(model, ec) && fs::path(model).extension() == ".gguf")) {
    dir_ = model;
    return;
  }
  temp_ = (fs::path(scratch_parent.empty() ? "." : scratch_parent) /
           (".streamq-gguf-" + std::to_string(::getpid()))).string();
  fs::remove_all(temp_, ec);
  // F32 keeps the dequantized values exactly: the quantizer starts from what
  // the GGUF actually holds.
  const GgufConversion c = gguf_to_hf_dir(model, temp_, DType::F32);
  if (log) {
    *log << "streamq: converted " << model << " (" << c.tensors << " tensors) to HF layout in " << temp_;
    if (!c.tokenizer_written) *log << "; no tokenizer.json: " << c.tokenizer_note;
    *log << "\n";
  }
  dir_ = temp_;
}

ModelSource::~ModelSource() {
  if (!temp_.empty()) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
}

}  // namespace streamq
