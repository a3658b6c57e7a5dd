// GGUF -> HF model directory: config.json, model.safetensors written one
// dequantized tensor at a time, and the tokenizer files when convertible, so
// the rest of streamq reads a GGUF model like any HF checkpoint.
#include <filesystem>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/gguf.h"
#include "src/model/gguf_convert.h"
#include "io/formats/safetensors.h"

namespace streamq {

namespace {

const char* torch_dtype(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return nullptr;
  }
}

}  // namespace

GgufConversion gguf_to_hf_dir(const std::string& gguf_path, const std::string& out_dir, DType out_dtype) {
  if (!torch_dtype(out_dtype))
    throw InputError(out_dir + ": cannot write a GGUF model as " + std::string(dtype_name(out_dtype)) +
                     " (F32, F16 or BF16)");
  const std::unique_ptr<GgufFile> g = GgufFile::open(gguf_path);
  const std::vector<std::string> names = g->hf_tensor_names();

  GgufConversion result;
  // The tokenizer goes first: a GGUF whose tokenizer cannot be converted
  // still yields a model (quantizing needs only token ids), and the note says why.
  GgufTokenizer tok;
  try {
    tok = g->tokenizer();
    const std::string json = gguf_tokenizer_to_hf_json(tok, gguf_path);
    make_dirs(out_dir);
    atomic_write_file(out_dir + "/tokenizer.json", json);
    atomic_write_file(out_dir + "/tokenizer_config.json", gguf_tokenizer_config_json(tok, gguf_path));
    result.tokenizer_written = true;
  } catch (const InputError& e) {
    result.tokenizer_note = e.what();
  }

  std::vector<TensorSpec> plan;
  for (const std::string& n : names) plan.push_back({n, out_dtype, g->hf_shape(n)});
  const std::string source = std::filesystem::path(gguf_path).filename().string();
  SafetensorsWriter writer(out_dir, plan, {{"streamq_source_gguf", source}});
  for (const std::string& n : names) {
    const std::vector<float> values = g->read_hf_f32(n);
    writer.write_f32(n, values.data(), static_cast<int64_t>(values.size()));
  }
  writer.finish();
  result.tensors = names.size();

  nlohmann::json config = g->hf_config();
  config["torch_dtype"] = torch_dtype(out_dtype);
  atomic_write_file(out_dir + "/config.json", config.dump(2) + "\n");
  return result;
}

}  // namespace streamq
