// compressed-tensors pack-quantized export: check every quantized linear
// against what the decompressor reconstructs, pack it, copy the rest, and
// describe it in config.json's quantization_config.
#include "src/export/compressed_tensors_export.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/compressed_tensors_pack.h"
#include "io/formats/safetensors.h"
#include "src/export/quant_output.h"
#include "src/job/output_dir.h"
#include "src/methods/quant_config_json.h"

#ifndef STREAMQ_VERSION
#define STREAMQ_VERSION "unknown"
#endif

namespace fs = std::filesystem;

namespace streamq {
namespace {

// vLLM fuses q/k/v_proj and gate/up_proj into one layer and refuses a fused
// layer whose shards have different schemes (compressed_tensors.py
// _check_scheme_supported / should_ignore_layer), so they stay dense together.
struct FusedSet {
  const char* fused;
  std::vector<std::string> members;
};
const std::vector<FusedSet>& fused_sets() {
  static const std::vector<FusedSet> sets{
      {"self_attn.qkv_proj", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}},
      {"mlp.gate_up_proj", {"mlp.gate_proj", "mlp.up_proj"}}};
  return sets;
}

// Shapes vLLM's CompressedTensorsWNA16.create_weights allocates with floor
// division (compressed-tensors itself pads); empty when the linear packs.
std::string shape_reason(const QuantLinearInfo& l, const QuantConfig& q) {
  const int f = ct_pack_factor(q.bits);
  if (l.in % f != 0)
    return "in_features " + std::to_string(l.in) + " is not a multiple of the pack factor " + std::to_string(f) +
           " (vLLM allocates weight_packed with in // " + std::to_string(f) + " words)";
  if (q.group > 0 && l.in % q.group != 0)
    return "in_features " + std::to_string(l.in) + " is not a multiple of group_size " + std::to_string(q.group) +
           " (compressed-tensors' dequantize and vLLM require it)";
  if (!q.sym && l.out % f != 0)
    return "out_features " + std::to_string(l.out) + " is not a multiple of the pack factor " + std::to_string(f) +
           " (weight_zero_point is packed along the output dimension; vLLM allocates out // " + std::to_string(f) +
           " rows)";
  return "";
}

struct Entry {
  const QuantLinearInfo* info;
  std::string reason;
};

void decide_exclusions(std::vector<Entry>& linears, const QuantConfig& q) {
  for (auto& e : linears) e.reason = shape_reason(*e.info, q);
  std::map<std::string, std::map<std::string, Entry*>> by_block;
  for (auto& e : linears)
    by_block[e.info->prefix.substr(0, e.info->prefix.size() - e.info->rel.size())][e.info->rel] = &e;
  for (auto& [block, members] : by_block)
    for (const FusedSet& set : fused_sets()) {
      std::string bad;
      for (const auto& m : set.members)
        if (members.count(m) && !members[m]->reason.empty()) bad = m;
      if (bad.empty()) continue;
      for (const auto& m : set.members)
        if (members.count(m) && members[m]->reason.empty())
          members[m]->reason = std::string("fused by vLLM into ") + set.fused + " with " + bad +
                               ", which cannot be packed (all shards must share one scheme)";
    }
}

// The dtype weight_scale is stored in: the model's weight dtype when it holds
// every (fp16-valued) scale exactly, else float32. Loaders dequantize in the
// scale's dtype (compressed-tensors) or cast it to the model dtype (vLLM).
// Reads only the scales (one linear at a time: the model never sits in memory).
DType scale_dtype(const QuantOutput& qo, const QuantLinearInfo& l) {
  const DType wd = qo.model().info(l.prefix + ".weight").dtype;
  if (wd == DType::F32 || wd == DType::F16) return wd;
  const TensorInfo* ts = qo.quant_file().find(l.prefix + ".scales");
  if (!ts || ts->dtype != DType::F32 || ts->numel() != l.ngroups * l.out)
    throw InputError(qo.quant_file().path() + ": tensor " + l.prefix + ".scales is missing or not F32 [" +
                     std::to_string(l.ngroups) + ", " + std::to_string(l.out) + "]");
  const auto* s = static_cast<const float*>(qo.quant_file().data(*ts));
  for (int64_t k = 0; k < ts->numel(); ++k)
    if (through_dtype_f32(s[k], wd) != s[k]) return DType::F32;
  return wd;
}

std::string actorder_of(const QuantConfig& q) {
  if (!q.act_order || q.group <= 0 || q.method == MethodKind::Rtn) return "";
  // Two-stage grids are fixed in column order before the sweep, as static groups are.
  return q.static_groups || q.two_stage() ? "static" : "group";
}

nlohmann::json quantization_config(const QuantConfig& q, const nlohmann::json& settings,
                                   const CompressedTensorsExportReport& rep) {
  nlohmann::json weights{{"num_bits", q.bits},
                         {"type", "int"},
                         {"symmetric", q.sym},
                         {"strategy", q.group > 0 ? "group" : "channel"},
                         {"group_size", q.group > 0 ? nlohmann::json(q.group) : nlohmann::json(nullptr)},
                         {"block_structure", nullptr},
                         {"dynamic", false},
                         {"actorder", rep.actorder.empty() ? nlohmann::json(nullptr) : nlohmann::json(rep.actorder)},
                         {"observer", "minmax"},
                         {"observer_kwargs", nlohmann::json::object()}};
  nlohmann::json group{{"targets", {"Linear"}},
                       {"weights", weights},
                       {"input_activations", nullptr},
                       {"output_activations", nullptr}};
  nlohmann::json streamq{{"quantizer", std::string("streamq:") + STREAMQ_VERSION},
                         {"method", q.describe()},
                         {"quant_config", quant_config_to_json(q)}};
  if (!settings.is_null()) streamq["settings"] = settings;
  return {{"quant_method", "compressed-tensors"},
          {"format", "pack-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups", {{"group_0", group}}},
          {"ignore", rep.ignore},
          {"kv_cache_scheme", nullptr},
          {"global_compression_ratio", nullptr},
          {"sparsity_config", nlohmann::json::object()},
          {"streamq", streamq}};
}

}  // namespace

nlohmann::json CompressedTensorsExportReport::to_json() const {
  nlohmann::json j{{"format", "compressed-tensors"}, {"quant_dir", quant_dir}, {"out_dir", out_dir},
                   {"bits", bits},                   {"group_size", group},  {"sym", sym},
                   {"actorder", actorder.empty() ? nlohmann::json(nullptr) : nlohmann::json(actorder)},
                   {"packed", packed},               {"ignore", ignore},     {"files", files},
                   {"notes", notes}};
  j["excluded"] = nlohmann::json::array();
  for (const auto& e : excluded) j["excluded"].push_back({{"module", e.module}, {"reason", e.reason}});
  return j;
}

CompressedTensorsExportReport write_compressed_tensors_checkpoint(const std::string& quant_dir,
                                                                  const std::string& dest_dir,
                                                                  const CompressedTensorsExportOptions& opts,
                                                                  std::ostream* log) {
  std::error_code ec;
  if (fs::equivalent(quant_dir, dest_dir, ec))
    throw InputError(dest_dir + ": the checkpoint must be written to a directory other than its source");
  const QuantOutput qo(quant_dir);
  const QuantConfig& q = qo.quant();
  if (q.free_min)
    throw InputError(quant_dir + ": quantized with a free-min grid (GGUF Q4_1: x = scale * code + min); "
                     "compressed-tensors stores integer zero points: re-quantize without --gguf-type Q4_1");
  if (q.bits != 2 && q.bits != 4 && q.bits != 8)
    throw InputError(quant_dir + ": quantized with " + std::to_string(q.bits) +
                     " bits; streamq writes compressed-tensors checkpoints of 2, 4 or 8 bits (vLLM runs 4 and 8): "
                     "for other widths the package's releases disagree on the packing (docs/compressed-tensors-format.md)");
  std::vector<Entry> linears;
  for (const auto& l : qo.linears()) linears.push_back({&l, ""});
  decide_exclusions(linears, q);

  CompressedTensorsExportReport rep;
  rep.quant_dir = quant_dir;
  rep.out_dir = dest_dir;
  rep.bits = q.bits;
  rep.group = q.group > 0 ? q.group : -1;
  rep.sym = q.sym;
  rep.actorder = actorder_of(q);
  const bool with_g_idx = rep.actorder == "group";
  std::map<std::string, const Entry*> packed;  // "<prefix>.weight" -> entry
  for (const auto& e : linears) {
    if (e.reason.empty()) {
      packed[e.info->prefix + ".weight"] = &e;
      rep.packed.push_back(e.info->prefix);
    } else {
      rep.excluded.push_back({e.info->prefix, e.reason});
      rep.ignore.push_back(e.info->prefix);
    }
  }
  rep.ignore.push_back("lm_head");  // never quantized by streamq; "Linear" would match it
  if (q.bits == 2)
    rep.notes.push_back("vLLM's WNA16 kernels take 4 and 8 bits; the compressed-tensors package decompresses "
                        "2-bit checkpoints");
  if (rep.actorder == "group")
    rep.notes.push_back("actorder group (weight_g_idx): read by vLLM; compressed-tensors releases since 2026-08 "
                        "refuse it (re-quantize with --static-groups for actorder static)");

  const SafetensorsModel& fq = qo.model();
  std::vector<TensorSpec> plan;
  for (const auto& name : fq.tensor_names()) {
    const auto it = packed.find(name);
    if (it == packed.end()) {
      const TensorInfo& t = fq.info(name);
      plan.push_back({name, t.dtype, t.shape});
      continue;
    }
    const QuantLinearInfo& l = *it->second->info;
    const DType sd = scale_dtype(qo, l), wd = fq.info(name).dtype;
    if (sd != wd)
      rep.notes.push_back(l.prefix + ".weight_scale: float32 (the weights' " + dtype_name(wd) +
                          " cannot hold its fp16 scales exactly; vLLM casts it to the model dtype)");
    plan.push_back({l.prefix + ".weight_packed", DType::I32, {l.out, ct_packed_words(l.in, q.bits)}});
    plan.push_back({l.prefix + ".weight_scale", sd, {l.out, l.ngroups}});
    plan.push_back({l.prefix + ".weight_shape", DType::I32, {2}});
    if (!q.sym) plan.push_back({l.prefix + ".weight_zero_point", DType::I32, {ct_packed_words(l.out, q.bits), l.ngroups}});
    if (with_g_idx) plan.push_back({l.prefix + ".weight_g_idx", DType::I32, {l.in}});
  }
  SafetensorsWriter writer(dest_dir, plan, {{"format", "pt"}, {"streamq", q.describe()}}, opts.max_shard_bytes);
  for (const auto& name : fq.tensor_names()) {
    const auto it = packed.find(name);
    if (it == packed.end()) {
      const TensorInfo& t = fq.info(name);
      writer.write(name, fq.file_of(name).data(t), t.nbytes);
      continue;
    }
    const QuantLinearInfo& l = *it->second->info;
    const QuantLinearData d = qo.read(l, "compressed-tensors");
    // streamq's code c in [0, 2^b - 1] is compressed-tensors' signed value
    // q = c - 2^(b-1) after pack_to_int32's offset back to unsigned: c itself.
    const std::vector<int32_t> wp = ct_pack_rows(d.codes.data(), l.out, l.in, q.bits);
    writer.write(l.prefix + ".weight_packed", wp.data(), wp.size() * sizeof(int32_t));
    std::vector<float> st(static_cast<size_t>(l.out * l.ngroups));  // [out, ngroups]
    for (int64_t g = 0; g < l.ngroups; ++g)
      for (int64_t o = 0; o < l.out; ++o) st[o * l.ngroups + g] = d.scales[g * l.out + o];
    writer.write_f32(l.prefix + ".weight_scale", st.data(), static_cast<int64_t>(st.size()));
    const int32_t shape[2] = {static_cast<int32_t>(l.out), static_cast<int32_t>(l.in)};
    writer.write(l.prefix + ".weight_shape", shape, sizeof shape);
    if (!q.sym) {
      // Zero points: signed zp = z - 2^(b-1), offset back to unsigned = z.
      std::vector<uint8_t> zt(static_cast<size_t>(l.out * l.ngroups));  // [out, ngroups]
      for (int64_t g = 0; g < l.ngroups; ++g)
        for (int64_t o = 0; o < l.out; ++o) zt[o * l.ngroups + g] = static_cast<uint8_t>(d.zeros[g * l.out + o]);
      const std::vector<int32_t> zp = ct_pack_cols(zt.data(), l.out, l.ngroups, q.bits);
      writer.write(l.prefix + ".weight_zero_point", zp.data(), zp.size() * sizeof(int32_t));
    }
    if (with_g_idx) {
      writer.write(l.prefix + ".weight_g_idx", d.g_idx.data(), d.g_idx.size() * sizeof(int32_t));
    } else if (q.group > 0) {
      // Without weight_g_idx loaders take column i in group i / group_size:
      // a config that promised fixed groups must have produced exactly that.
      for (int64_t i = 0; i < l.in; ++i)
        if (d.g_idx[static_cast<size_t>(i)] != i / q.group)
          throw InternalError(l.prefix + ": g_idx is not contiguous although the groups were fixed (" +
                              q.describe() + ")");
    }
  }
  writer.finish();
  rep.files = writer.file_names();

  nlohmann::json config = qo.config();
  config["quantization_config"] = quantization_config(q, qo.settings(), rep);
  atomic_write_file(dest_dir + "/config.json", config.dump(2) + "\n");
  atomic_write_file(dest_dir + "/" + kCompressedTensorsExportReportName, rep.to_json().dump(1) + "\n");
  if (log) {
    *log << "streamq export: " << rep.packed.size() << " linears packed (compressed-tensors pack-quantized, w"
         << q.bits << " " << (rep.group > 0 ? "g" + std::to_string(rep.group) : std::string("per-channel")) << " "
         << (q.sym ? "sym" : "asym") << (rep.actorder.empty() ? "" : " actorder " + rep.actorder) << ")";
    if (!rep.excluded.empty()) *log << "; " << rep.excluded.size() << " written dense (fake-quant weights):";
    *log << "\n";
    for (const auto& e : rep.excluded) *log << "  dense: " << e.module << ": " << e.reason << "\n";
    for (const auto& n : rep.notes) *log << "  note: " << n << "\n";
  }
  return rep;
}

CompressedTensorsExportReport export_compressed_tensors(const std::string& quant_dir, const std::string& out_dir,
                                                        const CompressedTensorsExportOptions& opts,
                                                        std::ostream* log) {
  std::error_code ec;
  if (!fs::is_directory(quant_dir, ec))
    throw InputError("--from " + quant_dir + ": not a directory (the output directory of streamq quantize)");
  if (fs::equivalent(quant_dir, out_dir, ec))
    throw InputError("--out " + out_dir + " is --from: write the checkpoint to another directory");
  OutputDir out(out_dir, opts.overwrite);
  out.copy_side_files(quant_dir);
  fs::remove(out.staging_path() + "/streamq_report.json", ec);  // describes the fake-quant output
  CompressedTensorsExportReport rep = write_compressed_tensors_checkpoint(quant_dir, out.staging_path(), opts, log);
  rep.out_dir = out_dir;
  atomic_write_file(out.staging_path() + "/" + kCompressedTensorsExportReportName, rep.to_json().dump(1) + "\n");
  out.commit();
  return rep;
}

}  // namespace streamq
