// GPTQ checkpoint -> plain HF directory: unpack, dequantize, copy the rest.
#include "src/export/gptq_import.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/gptq_pack.h"
#include "io/formats/safetensors.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

nlohmann::json read_config(const std::string& dir) {
  const nlohmann::json j = nlohmann::json::parse(read_file(dir + "/config.json"), nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw InputError(dir + "/config.json: not a JSON object");
  return j;
}

// torch_dtype of the config, as a safetensors dtype for the dequantized weights.
DType weight_dtype(const nlohmann::json& config) {
  const std::string t = config.value("torch_dtype", std::string("float32"));
  if (t == "float16") return DType::F16;
  if (t == "bfloat16") return DType::BF16;
  return DType::F32;
}

std::vector<int32_t> read_i32(const SafetensorsModel& st, const std::string& name, const std::vector<int64_t>& shape) {
  const TensorInfo& t = st.info(name);
  if (t.dtype != DType::I32 || t.shape != shape)
    throw InputError(st.dir() + ": " + name + " is not int32 of the shape its qweight implies");
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), st.file_of(name).data(t), t.nbytes);
  return v;
}

}  // namespace

bool is_gptq_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || !fs::is_regular_file(dir + "/config.json", ec)) return false;
  const nlohmann::json j = nlohmann::json::parse(read_file(dir + "/config.json"), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("quantization_config")) return false;
  const nlohmann::json& q = j["quantization_config"];
  return q.is_object() && q.value("quant_method", std::string()) == "gptq";
}

GptqImport gptq_to_hf_dir(const std::string& gptq_dir, const std::string& out_dir) {
  nlohmann::json config = read_config(gptq_dir);
  if (!config.contains("quantization_config"))
    throw InputError(gptq_dir + "/config.json: no quantization_config (not a GPTQ checkpoint)");
  const nlohmann::json qc = config["quantization_config"];
  int bits = 0;
  int64_t group = -1;
  std::string format;
  try {
    bits = qc.at("bits").get<int>();
    group = qc.at("group_size").get<int64_t>();
    format = qc.value("checkpoint_format", std::string("gptq"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(gptq_dir + "/config.json: bad quantization_config: " + e.what());
  }
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw InputError(gptq_dir + "/config.json: quantization_config.bits " + std::to_string(bits) + " (2, 3, 4 or 8)");
  if (format != "gptq" && format != "gptq_v2")
    throw InputError(gptq_dir + "/config.json: checkpoint_format '" + format + "' (gptq or gptq_v2 expected)");
  if (group == 0 || group < -1) throw InputError(gptq_dir + "/config.json: group_size " + std::to_string(group));
  const int zero_offset = format == "gptq" ? 1 : 0;  // the classic format stores zero - 1
  const DType wdtype = weight_dtype(config);

  const std::unique_ptr<SafetensorsModel> st = SafetensorsModel::open(gptq_dir);
  const std::vector<std::string> names = st->tensor_names();
  const std::string qsuffix = ".qweight";
  std::map<std::string, std::pair<int64_t, int64_t>> linears;  // prefix -> (out, in)
  for (const auto& n : names) {
    if (n.size() <= qsuffix.size() || n.compare(n.size() - qsuffix.size(), qsuffix.size(), qsuffix) != 0) continue;
    const TensorInfo& t = st->info(n);
    // numel() > 0 bounds both dimensions by the file size, so shape[0] * 32 cannot overflow.
    if (t.dtype != DType::I32 || t.shape.size() != 2 || t.numel() == 0 || (t.shape[0] * 32) % bits != 0)
      throw InputError(gptq_dir + ": " + n + " is not a 2-D int32 qweight of " + std::to_string(bits) + "-bit codes");
    linears[n.substr(0, n.size() - qsuffix.size())] = {t.shape[1], t.shape[0] * 32 / bits};
  }
  auto packed_part = [&](const std::string& n) {
    for (const char* s : {".qweight", ".qzeros", ".scales", ".g_idx"}) {
      const std::string suf(s);
      if (n.size() > suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0 &&
          linears.count(n.substr(0, n.size() - suf.size())))
        return true;
    }
    return false;
  };

  std::vector<TensorSpec> plan;
  for (const auto& n : names)
    if (!packed_part(n)) plan.push_back({n, st->info(n).dtype, st->info(n).shape});
  for (const auto& [prefix, shape] : linears) {
    if (st->has(prefix + ".weight")) throw InputError(gptq_dir + ": " + prefix + " has both qweight and weight");
    plan.push_back({prefix + ".weight", wdtype, {shape.first, shape.second}});
  }
  make_dirs(out_dir);
  SafetensorsWriter writer(out_dir, plan, {{"format", "pt"}, {"streamq_source_gptq", fs::path(gptq_dir).filename().string()}},
                           UINT64_MAX);
  GptqImport result;
  for (const auto& n : names) {
    if (packed_part(n)) continue;
    const TensorInfo& t = st->info(n);
    writer.write(n, st->file_of(n).data(t), t.nbytes);
    ++result.tensors;
  }
  for (const auto& [prefix, shape] : linears) {
    const auto [out, in] = shape;
    const int64_t gsize = group > 0 ? group : in;
    const int64_t ngroups = (in + gsize - 1) / gsize;
    const std::vector<int32_t> qweight = read_i32(*st, prefix + ".qweight", {gptq_packed_words(in, bits), out});
    const std::vector<int32_t> qzeros = read_i32(*st, prefix + ".qzeros", {ngroups, gptq_packed_words(out, bits)});
    std::vector<int32_t> g_idx(static_cast<size_t>(in));
    if (st->has(prefix + ".g_idx")) {
      g_idx = read_i32(*st, prefix + ".g_idx", {in});
    } else {
      for (int64_t i = 0; i < in; ++i) g_idx[i] = static_cast<int32_t>(i / gsize);
    }
    const TensorInfo& ts = st->info(prefix + ".scales");
    if (ts.shape != std::vector<int64_t>{ngroups, out})
      throw InputError(gptq_dir + ": " + prefix + ".scales is not [" + std::to_string(ngroups) + ", " +
                       std::to_string(out) + "]");
    const std::vector<float> scales = st->read_f32(prefix + ".scales", ngroups * out);
    const std::vector<uint8_t> codes = gptq_unpack_qweight(qweight.data(), out, in, bits);
    const std::vector<uint8_t> zeros = gptq_unpack_qzeros(qzeros.data(), ngroups, out, bits);
    std::vector<float> w(static_cast<size_t>(out * in));
    for (int64_t i = 0; i < in; ++i) {
      const int32_t g = g_idx[i];
      if (g < 0 || g >= ngroups)
        throw InputError(gptq_dir + ": " + prefix + ".g_idx[" + std::to_string(i) + "] = " + std::to_string(g) +
                         " is not a group in [0, " + std::to_string(ngroups) + ")");
      for (int64_t o = 0; o < out; ++o) {
        const size_t k = static_cast<size_t>(g * out + o);
        // fp16 scale times a small integer: exact in double and in float.
        w[o * in + i] = static_cast<float>(static_cast<double>(scales[k]) *
                                           (static_cast<int>(codes[o * in + i]) - (zeros[k] + zero_offset)));
      }
    }
    writer.write_f32(prefix + ".weight", w.data(), out * in);
    ++result.linears;
    ++result.tensors;
  }
  writer.finish();

  config.erase("quantization_config");
  atomic_write_file(out_dir + "/config.json", config.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(gptq_dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (name == "config.json" || name == "quantize_config.json" || ext == ".safetensors" ||
        name == "model.safetensors.index.json" || e.file_size() > (64ull << 20))
      continue;
    atomic_write_file(out_dir + "/" + name, read_file(e.path().string()));
  }
  return result;
}

}  // namespace streamq
