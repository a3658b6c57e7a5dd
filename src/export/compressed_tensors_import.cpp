// compressed-tensors pack-quantized checkpoint -> plain HF directory.
#include "src/export/compressed_tensors_import.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/compressed_tensors_pack.h"
#include "io/formats/safetensors.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

const char* const kParts[] = {".weight_packed", ".weight_scale", ".weight_shape", ".weight_zero_point",
                              ".weight_g_idx"};

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() > suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

std::vector<int32_t> read_i32(const SafetensorsModel& st, const std::string& name) {
  const TensorInfo& t = st.info(name);
  if (t.dtype != DType::I32) throw InputError(st.dir() + ": " + name + " is not int32");
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), st.file_of(name).data(t), t.nbytes);
  return v;
}

struct WeightArgs {
  int bits = 0;
  bool sym = true;
  int64_t group = -1;  // -1: channel
};

WeightArgs weight_args(const nlohmann::json& qc, const std::string& where) {
  if (qc.value("format", std::string()) != "pack-quantized")
    throw InputError(where + ": quantization_config.format '" + qc.value("format", std::string()) +
                     "': streamq reads pack-quantized checkpoints only");
  const std::string status = qc.value("quantization_status", std::string("compressed"));
  if (status != "compressed")
    throw InputError(where + ": quantization_status '" + status + "': only compressed checkpoints hold packed weights");
  if (!qc.contains("config_groups") || !qc["config_groups"].is_object() || qc["config_groups"].size() != 1)
    throw InputError(where + ": streamq reads checkpoints with exactly one entry in quantization_config.config_groups");
  const nlohmann::json& g = qc["config_groups"].begin().value();
  if (!g.contains("weights") || !g["weights"].is_object())
    throw InputError(where + ": the config group has no weights scheme");
  if (g.contains("input_activations") && !g["input_activations"].is_null())
    throw InputError(where + ": activation quantization (input_activations) is not supported; weight-only schemes only");
  const nlohmann::json& w = g["weights"];
  WeightArgs a;
  try {
    a.bits = w.value("num_bits", 8);
    a.sym = w.value("symmetric", true);
    const std::string type = w.value("type", std::string("int"));
    const std::string strategy = w.value("strategy", std::string());
    if (type != "int") throw InputError(where + ": weights.type '" + type + "' (int expected)");
    if (strategy == "group") {
      a.group = w.at("group_size").get<int64_t>();
      if (a.group < 1) throw InputError(where + ": weights.group_size " + std::to_string(a.group));
    } else if (strategy != "channel") {
      throw InputError(where + ": weights.strategy '" + strategy + "' (group or channel expected)");
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": bad quantization_config weights: " + e.what());
  }
  if (a.bits != 1 && a.bits != 2 && a.bits != 4 && a.bits != 8)
    throw InputError(where + ": weights.num_bits " + std::to_string(a.bits) +
                     ": streamq reads 1, 2, 4 and 8 bits (the package's releases pack other widths differently)");
  return a;
}

}  // namespace

bool is_compressed_tensors_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || !fs::is_regular_file(dir + "/config.json", ec)) return false;
  const nlohmann::json j = nlohmann::json::parse(read_file(dir + "/config.json"), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("quantization_config")) return false;
  const nlohmann::json& q = j["quantization_config"];
  return q.is_object() && q.value("quant_method", std::string()) == "compressed-tensors";
}

CompressedTensorsImport compressed_tensors_to_hf_dir(const std::string& ct_dir, const std::string& out_dir) {
  const std::string cfg_path = ct_dir + "/config.json";
  nlohmann::json config = nlohmann::json::parse(read_file(cfg_path), nullptr, false);
  if (config.is_discarded() || !config.is_object()) throw InputError(cfg_path + ": not a JSON object");
  const WeightArgs a = weight_args(config.at("quantization_config"), cfg_path);
  const std::string t = config.value("torch_dtype", std::string("float32"));
  const DType wdtype = t == "float16" ? DType::F16 : (t == "bfloat16" ? DType::BF16 : DType::F32);

  const std::unique_ptr<SafetensorsModel> st = SafetensorsModel::open(ct_dir);
  const std::vector<std::string> names = st->tensor_names();
  std::map<std::string, std::pair<int64_t, int64_t>> linears;  // prefix -> (out, in)
  for (const auto& n : names) {
    if (!ends_with(n, ".weight_packed")) continue;
    const std::string prefix = n.substr(0, n.size() - std::strlen(".weight_packed"));
    if (!st->has(prefix + ".weight_shape") || !st->has(prefix + ".weight_scale"))
      throw InputError(ct_dir + ": " + n + " has no weight_shape or weight_scale beside it");
    const std::vector<int32_t> shape = read_i32(*st, prefix + ".weight_shape");
    if (shape.size() != 2 || shape[0] < 1 || shape[1] < 1)
      throw InputError(ct_dir + ": " + prefix + ".weight_shape is not two positive int32 values");
    linears[prefix] = {shape[0], shape[1]};
  }
  auto packed_part = [&](const std::string& n) {
    for (const char* s : kParts)
      if (ends_with(n, s) && linears.count(n.substr(0, n.size() - std::strlen(s)))) return true;
    return false;
  };
  std::vector<TensorSpec> plan;
  for (const auto& n : names)
    if (!packed_part(n)) plan.push_back({n, st->info(n).dtype, st->info(n).shape});
  for (const auto& [prefix, shape] : linears) {
    if (st->has(prefix + ".weight")) throw InputError(ct_dir + ": " + prefix + " has both weight_packed and weight");
    plan.push_back({prefix + ".weight", wdtype, {shape.first, shape.second}});
  }
  make_dirs(out_dir);
  SafetensorsWriter writer(out_dir, plan,
                           {{"format", "pt"}, {"streamq_source_compressed_tensors", fs::path(ct_dir).filename().string()}},
                           UINT64_MAX);
  CompressedTensorsImport result;
  for (const auto& n : names) {
    if (packed_part(n)) continue;
    const TensorInfo& ti = st->info(n);
    writer.write(n, st->file_of(n).data(ti), ti.nbytes);
    ++result.tensors;
  }
  const int half = 1 << (a.bits - 1);
  for (const auto& [prefix, shape] : linears) {
    const auto [out, in] = shape;
    const int64_t gsize = a.group > 0 ? a.group : in;
    if (in % gsize != 0)
      throw InputError(ct_dir + ": " + prefix + ": in_features " + std::to_string(in) +
                       " is not a multiple of group_size " + std::to_string(gsize));
    const int64_t ngroups = in / gsize;
    const std::string where = ct_dir + ": " + prefix;
    const std::vector<int32_t> wp = read_i32(*st, prefix + ".weight_packed");
    if (st->info(prefix + ".weight_packed").shape != std::vector<int64_t>{out, ct_packed_words(in, a.bits)})
      throw InputError(where + ".weight_packed is not [" + std::to_string(out) + ", " +
                       std::to_string(ct_packed_words(in, a.bits)) + "]");
    const std::vector<uint8_t> codes = ct_unpack_rows(wp.data(), out, in, a.bits);
    if (st->info(prefix + ".weight_scale").shape != std::vector<int64_t>{out, ngroups})
      throw InputError(where + ".weight_scale is not [" + std::to_string(out) + ", " + std::to_string(ngroups) + "]");
    const std::vector<float> scales = st->read_f32(prefix + ".weight_scale", out * ngroups);
    std::vector<uint8_t> zeros(static_cast<size_t>(out * ngroups), static_cast<uint8_t>(half));  // [out, ngroups]
    if (!a.sym) {
      if (!st->has(prefix + ".weight_zero_point")) throw InputError(where + ": asymmetric but no weight_zero_point");
      const std::vector<int32_t> zp = read_i32(*st, prefix + ".weight_zero_point");
      if (st->info(prefix + ".weight_zero_point").shape != std::vector<int64_t>{ct_packed_words(out, a.bits), ngroups})
        throw InputError(where + ".weight_zero_point is not [" + std::to_string(ct_packed_words(out, a.bits)) + ", " +
                         std::to_string(ngroups) + "]");
      zeros = ct_unpack_cols(zp.data(), out, ngroups, a.bits);
    }
    std::vector<int32_t> g_idx(static_cast<size_t>(in));
    for (int64_t i = 0; i < in; ++i) g_idx[i] = static_cast<int32_t>(i / gsize);
    if (st->has(prefix + ".weight_g_idx")) {
      g_idx = read_i32(*st, prefix + ".weight_g_idx");
      if (static_cast<int64_t>(g_idx.size()) != in) throw InputError(where + ".weight_g_idx is not [" + std::to_string(in) + "]");
    }
    std::vector<float> w(static_cast<size_t>(out * in));
    for (int64_t i = 0; i < in; ++i) {
      const int32_t g = g_idx[i];
      if (g < 0 || g >= ngroups)
        throw InputError(where + ".weight_g_idx[" + std::to_string(i) + "] = " + std::to_string(g) +
                         " is not a group in [0, " + std::to_string(ngroups) + ")");
      for (int64_t o = 0; o < out; ++o) {
        const size_t k = static_cast<size_t>(o * ngroups + g);
        // (q - zp) with both offset by 2^(b-1) is (code - stored zero).
        w[o * in + i] = static_cast<float>(static_cast<double>(scales[k]) *
                                           (static_cast<int>(codes[o * in + i]) - static_cast<int>(zeros[k])));
      }
    }
    writer.write_f32(prefix + ".weight", w.data(), out * in);
    ++result.linears;
    ++result.tensors;
  }
  writer.finish();
  config.erase("quantization_config");
  atomic_write_file(out_dir + "/config.json", config.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(ct_dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (name == "config.json" || ext == ".safetensors" || name == "model.safetensors.index.json" ||
        e.file_size() > (64ull << 20))
      continue;
    atomic_write_file(out_dir + "/" + name, read_file(e.path().string()));
  }
  return result;
}

}  // namespace streamq
