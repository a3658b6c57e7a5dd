// `streamq inspect`: a model's config, its quantization metadata (a streamq
// quantize output, GPTQ and compressed-tensors checkpoints, GGUF files) and
// its tensor table.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "tools/cli_common.h"
#include "src/export/quant_output.h"
#include "io/file/file_util.h"
#include "io/formats/gguf.h"
#include "io/formats/safetensors.h"
#include "src/methods/quant_config_json.h"
#include "src/model/model.h"

namespace fs = std::filesystem;

namespace streamq::cli {
namespace {

void print_tensor_table(const SafetensorsModel& st) {
  std::printf("\n%-56s %-5s %-16s %12s  file\n", "tensor", "dtype", "shape", "bytes");
  for (const auto& name : st.tensor_names()) {
    const TensorInfo& t = st.info(name);
    std::string shape = "[";
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(t.shape[i]);
    shape += "]";
    std::string file = st.file_of(name).path();
    file = file.substr(file.find_last_of('/') + 1);
    std::printf("%-56s %-5s %-16s %12llu  %s\n", name.c_str(), dtype_name(t.dtype), shape.c_str(),
                (unsigned long long)t.nbytes, file.c_str());
  }
  std::printf("\n%zu tensors, %.2f MiB\n", st.tensor_names().size(), st.total_bytes() / 1048576.0);
}

// llama_ftype names of general.file_type (llama.h).
std::string file_type_name(int64_t t) {
  static const std::map<int64_t, const char*> names{{0, "ALL_F32"}, {1, "MOSTLY_F16"}, {2, "MOSTLY_Q4_0"},
                                                    {3, "MOSTLY_Q4_1"}, {7, "MOSTLY_Q8_0"}, {8, "MOSTLY_Q5_0"},
                                                    {9, "MOSTLY_Q5_1"}, {15, "MOSTLY_Q4_K_M"}, {32, "MOSTLY_BF16"}};
  const auto it = names.find(t);
  return it == names.end() ? "type " + std::to_string(t) : it->second;
}

int inspect_gguf(const std::string& path) {
  const auto f = GgufFile::open(path);
  std::printf("model %s\nformat GGUF v%u  alignment %llu\narchitecture %s\n", path.c_str(), f->version(),
              (unsigned long long)f->alignment(), f->architecture().c_str());
  std::printf("quantization: file_type %s  quantization_version %lld\n",
              file_type_name(f->meta_int("general.file_type", -1)).c_str(),
              (long long)f->meta_int("general.quantization_version", -1));
  const std::string by = f->meta_string("general.quantized_by", "");
  if (!by.empty()) std::printf("quantized_by %s\n", by.c_str());
  const std::string settings = f->meta_string("streamq.settings", "");
  if (!settings.empty()) std::printf("streamq settings %s\n", settings.c_str());
  std::map<std::string, std::pair<int64_t, uint64_t>> by_type;  // type -> (tensors, bytes)
  for (const auto& t : f->tensors()) {
    auto& e = by_type[ggml_type_label(t.type)];
    ++e.first;
    e.second += t.nbytes;
  }
  for (const auto& [type, e] : by_type)
    std::printf("  %-6s %5lld tensors %10.2f MiB\n", type.c_str(), (long long)e.first, e.second / 1048576.0);
  if (const GgufValue* tok = f->find("tokenizer.ggml.tokens"))
    std::printf("tokenizer %s (pre %s), %llu tokens\n", f->meta_string("tokenizer.ggml.model", "?").c_str(),
                f->meta_string("tokenizer.ggml.pre", "none").c_str(), (unsigned long long)tok->count);
  else
    std::printf("tokenizer none\n");
  std::printf("\n%-40s %-6s %-20s %12s\n", "tensor", "type", "ne", "bytes");
  for (const auto& t : f->tensors()) {
    std::string ne = "[";
    for (size_t i = 0; i < t.ne.size(); ++i) ne += (i ? "," : "") + std::to_string(t.ne[i]);
    ne += "]";
    std::printf("%-40s %-6s %-20s %12llu\n", t.name.c_str(), ggml_type_label(t.type).c_str(), ne.c_str(),
                (unsigned long long)t.nbytes);
  }
  std::printf("\n%zu tensors\n", f->tensors().size());
  return 0;
}

// The quantization_config of a GPTQ or compressed-tensors checkpoint.
// Every effective setting a streamq quantize recorded (preset, method with
// LoaQ, calibration), one JSON line.
void print_settings(const nlohmann::json& s) {
  if (!s.is_object()) return;
  const nlohmann::json learn = s.contains("method") && s["method"].is_object() ? s["method"].value("learn", nlohmann::json())
                                                                                : nlohmann::json();
  if (learn.is_object() && learn.value("kind", std::string("none")) != "none")  // docs/learning.md
    std::printf("  learned before quantizing: %s, band %d, cl-lambda %g, %d epochs, lr %g (the weights quantized "
                "were trained; nothing is needed at load time)\n",
                learn.value("kind", std::string("?")).c_str(), learn.value("band", 0), learn.value("cl_lambda", 0.0),
                learn.value("epochs", 0), learn.value("lr", 0.0));
  std::printf("  streamq settings %s\n", s.dump().c_str());
}

void print_quantization_config(const nlohmann::json& qc) {
  const std::string method = qc.value("quant_method", std::string("?"));
  std::printf("quantization: %s\n", method.c_str());
  if (method == "gptq") {
    std::printf("  bits %d  group_size %lld  sym %s  desc_act %s  checkpoint_format %s\n", qc.value("bits", 0),
                (long long)qc.value("group_size", int64_t{0}), qc.value("sym", true) ? "yes" : "no",
                qc.value("desc_act", false) ? "yes" : "no",
                qc.value("checkpoint_format", std::string("gptq")).c_str());
    if (qc.contains("dynamic")) std::printf("  dense rules (dynamic) %zu\n", qc["dynamic"].size());
  } else if (method == "compressed-tensors") {
    std::printf("  format %s  status %s\n", qc.value("format", std::string("?")).c_str(),
                qc.value("quantization_status", std::string("?")).c_str());
    if (qc.contains("config_groups") && qc["config_groups"].is_object())
      for (const auto& [name, g] : qc["config_groups"].items()) {
        const auto w = g.value("weights", nlohmann::json());
        if (!w.is_object()) continue;
        std::printf("  %s: targets %s  num_bits %d  type %s  symmetric %s  strategy %s  group_size %s  actorder %s\n",
                    name.c_str(), g.value("targets", nlohmann::json::array()).dump().c_str(), w.value("num_bits", 0),
                    w.value("type", std::string("?")).c_str(), w.value("symmetric", true) ? "yes" : "no",
                    w.value("strategy", std::string("?")).c_str(), w.value("group_size", nlohmann::json()).dump().c_str(),
                    w.value("actorder", nlohmann::json()).dump().c_str());
      }
    std::printf("  ignore %zu modules\n", qc.value("ignore", nlohmann::json::array()).size());
  } else {
    std::printf("  %s\n", qc.dump().c_str());
  }
}

}  // namespace

int run_inspect(const std::vector<std::string>& args) {
  std::string dir;
  po::options_description opts("inspect flags");
  opts.add_options()("help,h", "show this help")(
      "model", po::value(&dir),
      "an HF model directory, a streamq quantize output, a GPTQ or compressed-tensors checkpoint, or a GGUF file");
  po::variables_map vm;
  if (!parse("inspect", "--model DIR|FILE.gguf", opts, args, &vm)) return 0;
  require(vm, {"model"});
  std::error_code ec;
  if (fs::is_regular_file(dir, ec) && fs::path(dir).extension() == ".gguf") return inspect_gguf(dir);
  nlohmann::json qc;
  if (fs::is_regular_file(dir + "/config.json", ec)) {
    const nlohmann::json cfg = nlohmann::json::parse(read_file(dir + "/config.json"), nullptr, false);
    if (cfg.is_object() && cfg.contains("quantization_config")) qc = cfg["quantization_config"];
  }
  if (qc.is_object()) {
    // A packed checkpoint: its linears have no plain weights, so the model is
    // not validated as an HF model here (eval does, after dequantizing).
    std::printf("model %s\n", dir.c_str());
    print_quantization_config(qc);
    if (qc.contains("meta") && qc["meta"].is_object()) print_settings(qc["meta"].value("streamq_settings", nlohmann::json()));
    if (qc.contains("streamq") && qc["streamq"].is_object()) print_settings(qc["streamq"].value("settings", nlohmann::json()));
    print_tensor_table(*SafetensorsModel::open(dir));
    return 0;
  }
  const Model model(dir);  // validates config and every tensor's shape
  const ModelConfig& c = model.config();
  std::printf("model %s\narchitecture %s\nhidden %lld  intermediate %lld  layers %lld\n", dir.c_str(),
              c.arch_name.c_str(), (long long)c.hidden, (long long)c.intermediate, (long long)c.layers);
  std::printf("heads %lld  kv_heads %lld  head_dim %lld  vocab %lld  max_pos %lld\n", (long long)c.heads,
              (long long)c.kv_heads, (long long)c.head_dim, (long long)c.vocab, (long long)c.max_pos);
  std::printf("rms_eps %g  rope_theta %g  rope_scaling %s  tied %s  attn_bias %s  qk_norm %s\n", c.rms_eps,
              c.rope_theta, c.rope_scaling.type.empty() ? "none" : c.rope_scaling.type.c_str(),
              c.tie_word_embeddings ? "yes" : "no", c.attention_bias ? "yes" : "no", c.qk_norm ? "yes" : "no");
  if (!c.rotation.empty())  // docs/rotation.md: what a loader must apply
    std::printf("rotated: %s%s%s%s (config.json streamq_rotation)%s\n", c.rotation.c_str(),
                c.online_hadamard ? ", online Hadamard before down_proj" : "",
                c.online_hadamard_o_proj ? ", online Hadamard before o_proj (heads x head_dim)" : "",
                c.head_hadamard ? ", per-head Hadamard (R2 in v/o_proj; R3 on q/k for a quantized KV cache)" : "",
                c.online_hadamard && c.online_hadamard_o_proj
                    ? "; a loader must rotate down_proj's and o_proj's inputs (streamq eval does, stock loaders do not)"
                : c.online_hadamard ? "; a loader must rotate down_proj's input (streamq eval does, stock loaders do not)"
                : c.online_hadamard_o_proj
                    ? "; a loader must rotate o_proj's input (streamq eval does, stock loaders do not)"
                    : "; a stock loader serves it as is");
  if (fs::is_regular_file(dir + "/streamq_quant.safetensors", ec)) {
    const auto qf = SafetensorsFile::open(dir + "/streamq_quant.safetensors");
    const auto it = qf->metadata().find("quant_config");
    int64_t linears = 0;
    for (const auto& t : qf->tensors()) linears += t.name.size() > 6 && t.name.rfind(".codes") == t.name.size() - 6;
    std::printf("quantization: streamq quantize output (fake-quant weights + streamq_quant.safetensors), %lld linears\n",
                (long long)linears);
    if (it != qf->metadata().end()) {
      const nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
      if (j.is_object()) std::printf("  %s\n", quant_config_from_json(j, qf->path()).describe().c_str());
    }
    print_settings(recorded_settings(*qf));
  }
  print_tensor_table(model.tensors());
  return 0;
}

}  // namespace streamq::cli
