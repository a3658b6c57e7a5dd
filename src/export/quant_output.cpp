// Reading a quantize output back for the exporters, with every consistency check.
#include "src/export/quant_output.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/safetensors.h"
#include "src/methods/grid.h"
#include "src/methods/quant_config_json.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

constexpr const char* kQuantFile = "streamq_quant.safetensors";

const TensorInfo& expect_tensor(const SafetensorsFile& f, const std::string& name, DType dtype,
                                const std::vector<int64_t>& shape) {
  const TensorInfo* t = f.find(name);
  if (!t) throw InputError(f.path() + ": tensor " + name + " is missing");
  if (t->dtype != dtype || t->shape != shape) {
    std::string want = std::string(dtype_name(dtype)) + " [";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    throw InputError(f.path() + ": tensor " + name + " has the wrong dtype or shape (expected " + want + "])");
  }
  return *t;
}

}  // namespace

float through_dtype_f32(float v, DType dtype) {
  if (dtype == DType::F32) return v;
  uint64_t buf = 0;
  convert_from_f32(dtype, &v, &buf, 1);
  float back = 0;
  convert_to_f32(dtype, &buf, &back, 1);
  return back;
}

nlohmann::json recorded_settings(const SafetensorsFile& f) {
  const auto it = f.metadata().find(kSettingsMetadataKey);
  if (it == f.metadata().end()) return nullptr;
  nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw InputError(f.path() + ": " + kSettingsMetadataKey + " metadata is not a JSON object");
  return j;
}

std::string block_relative_name(const std::string& prefix) {
  const std::string head = "model.layers.";
  if (prefix.rfind(head, 0) != 0) return prefix;
  const size_t dot = prefix.find('.', head.size());
  return dot == std::string::npos ? prefix : prefix.substr(dot + 1);
}

QuantOutput::QuantOutput(const std::string& quant_dir) : dir_(quant_dir) {
  std::error_code ec;
  const std::string qpath = quant_dir + "/" + kQuantFile;
  if (!fs::is_regular_file(qpath, ec))
    throw InputError(quant_dir + ": no " + std::string(kQuantFile) +
                     ": --from must be the output directory of streamq quantize");
  qfile_ = SafetensorsFile::open(qpath);
  const auto it = qfile_->metadata().find("quant_config");
  if (it == qfile_->metadata().end())
    throw InputError(qpath + ": no quant_config metadata (not written by streamq quantize, or damaged)");
  const nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw InputError(qpath + ": quant_config metadata is not valid JSON");
  quant_ = quant_config_from_json(j, qpath + " quant_config");
  settings_ = recorded_settings(*qfile_);
  model_ = SafetensorsModel::open(quant_dir);
  config_ = nlohmann::json::parse(read_file(quant_dir + "/config.json"), nullptr, false);
  if (config_.is_discarded() || !config_.is_object()) throw InputError(quant_dir + "/config.json: not a JSON object");
  const std::string suffix = ".codes";
  for (const TensorInfo& t : qfile_->tensors()) {
    if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    QuantLinearInfo l;
    l.prefix = t.name.substr(0, t.name.size() - suffix.size());
    l.rel = block_relative_name(l.prefix);
    if (t.shape.size() != 2) throw InputError(qpath + ": tensor " + t.name + " is not 2-D");
    l.out = t.shape[0];
    l.in = t.shape[1];
    l.ngroups = quant_.group > 0 ? (l.in + quant_.group - 1) / quant_.group : 1;
    if (!model_->has(l.prefix + ".weight"))
      throw InputError(quant_dir + ": quantized linear " + l.prefix + " has no " + l.prefix + ".weight in the model");
    linears_.push_back(std::move(l));
  }
  if (linears_.empty()) throw InputError(qpath + ": no quantized linears (no *.codes tensors)");
}

QuantOutput::~QuantOutput() = default;

QuantLinearData QuantOutput::read(const QuantLinearInfo& l, const std::string& what) const {
  const SafetensorsFile& qf = *qfile_;
  const std::string& p = l.prefix;
  const QuantConfig& q = quant_;
  const int maxq = (1 << q.bits) - 1;
  const Grid grid(q);
  const TensorInfo& tc = expect_tensor(qf, p + ".codes", DType::U8, {l.out, l.in});
  const TensorInfo& ts = expect_tensor(qf, p + ".scales", DType::F32, {l.ngroups, l.out});
  const TensorInfo& tz = expect_tensor(qf, p + ".zeros", DType::F32, {l.ngroups, l.out});
  const TensorInfo& tg = expect_tensor(qf, p + ".g_idx", DType::I32, {l.in});
  QuantLinearData r;
  r.codes.resize(static_cast<size_t>(l.out * l.in));
  std::memcpy(r.codes.data(), qf.data(tc), tc.nbytes);
  r.scales.resize(static_cast<size_t>(l.ngroups * l.out));
  r.zeros.resize(r.scales.size());
  std::memcpy(r.scales.data(), qf.data(ts), ts.nbytes);
  std::memcpy(r.zeros.data(), qf.data(tz), tz.nbytes);
  r.g_idx.resize(static_cast<size_t>(l.in));
  std::memcpy(r.g_idx.data(), qf.data(tg), tg.nbytes);

  const std::string where = qf.path() + ": " + p;
  const int64_t gsize = q.group > 0 ? q.group : l.in;
  for (int64_t i = 0; i < l.in; ++i) {
    if (r.g_idx[i] < 0 || r.g_idx[i] >= l.ngroups)
      throw InputError(where + ".g_idx[" + std::to_string(i) + "] = " + std::to_string(r.g_idx[i]) +
                       " is not a group in [0, " + std::to_string(l.ngroups) + ")");
    r.trivial_g_idx &= r.g_idx[i] == i / gsize;
  }
  for (size_t i = 0; i < r.codes.size(); ++i)
    if (r.codes[i] > maxq)
      throw InputError(where + ".codes: value " + std::to_string(r.codes[i]) + " exceeds " + std::to_string(maxq));
  const int half = 1 << (q.bits - 1);
  const bool free_min = q.free_min;
  for (size_t k = 0; k < r.scales.size(); ++k) {
    const std::string at = "[" + std::to_string(k / l.out) + ", " + std::to_string(k % l.out) + "]";
    const float s = r.scales[k], z = r.zeros[k];
    if (!(s > 0) || !std::isfinite(s) || f16_to_f32(f32_to_f16(s)) != s)
      throw InputError(where + ".scales" + at + " = " + std::to_string(s) + " is not a positive fp16 value; " + what +
                       " needs fp16-exact scales: re-quantize with this streamq (its grids use fp16 scales)");
    if (free_min) {
      if (!std::isfinite(z) || f16_to_f32(f32_to_f16(z)) != z)
        throw InputError(where + ".zeros" + at + " = " + std::to_string(z) + " is not an fp16 min");
      continue;
    }
    if (!(z >= 0 && z <= maxq && z == std::floor(z)))
      throw InputError(where + ".zeros" + at + " = " + std::to_string(z) + " is not an integer in [0, " +
                       std::to_string(maxq) + "]");
    if (q.sym && z != half)
      throw InputError(where + ".zeros" + at + " = " + std::to_string(z) + " but a symmetric grid's zero is " +
                       std::to_string(half));
  }
  // The fake-quant weight must be exactly what a loader reconstructs.
  const TensorInfo& tw = model_->info(p + ".weight");
  r.weight_dtype = tw.dtype;
  const std::vector<float> w = model_->read_f32(p + ".weight", l.out * l.in);
  for (int64_t o = 0; o < l.out; ++o)
    for (int64_t i = 0; i < l.in; ++i) {
      const size_t k = static_cast<size_t>(r.g_idx[i] * l.out + o);
      const GridParams gp{r.scales[k], r.zeros[k]};  // zeros hold the min of a free-min grid
      const float expect = through_dtype_f32(static_cast<float>(grid.dequant(r.codes[o * l.in + i], gp)), tw.dtype);
      if (w[o * l.in + i] != expect)
        throw InputError(model_->dir() + ": " + p + ".weight[" + std::to_string(o) + ", " + std::to_string(i) +
                         "] = " + std::to_string(w[o * l.in + i]) + " differs from its grid's value " +
                         std::to_string(expect) + " in " + qf.path() +
                         ": the quantize output is inconsistent (modified, or from an older streamq); re-quantize");
    }
  return r;
}

}  // namespace streamq
