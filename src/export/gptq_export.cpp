// GPTQ checkpoint export: validate every quantized linear against what a
// loader will reconstruct, pack it, copy the rest, describe it in config.json.
#include "src/export/gptq_export.h"
#include "src/export/quant_output.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <set>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/gptq_pack.h"
#include "io/formats/safetensors.h"
#include "src/methods/quant_config_json.h"
#include "src/job/output_dir.h"

#ifndef STREAMQ_VERSION
#define STREAMQ_VERSION "unknown"
#endif

namespace fs = std::filesystem;

namespace streamq {
namespace {

constexpr const char* kQuantFile = "streamq_quant.safetensors";

// One quantized linear of the streamq output, and whether the format holds it.
struct LinearEntry {
  std::string prefix;  // model.layers.3.mlp.down_proj
  std::string rel;     // mlp.down_proj: the name inside its block
  int64_t out = 0, in = 0, ngroups = 1;
  std::string reason;  // non-empty: written dense
};

std::string relative_name(const std::string& prefix) {
  const std::string head = "model.layers.";
  if (prefix.rfind(head, 0) != 0) return prefix;
  const size_t dot = prefix.find('.', head.size());
  return dot == std::string::npos ? prefix : prefix.substr(dot + 1);
}

// Linears that vLLM fuses into one layer (qkv_proj, gate_up_proj): every
// shard must have the same scheme, or vLLM refuses the checkpoint
// (gptq_utils.is_layer_gptq_quantized), so they are excluded together.
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

// The shape rules of the loaders (docs/gptq-format.md, "Which linears can be
// packed"); empty when the linear can be packed.
std::string shape_reason(const LinearEntry& e, int64_t group) {
  if (e.in % 32 != 0)
    return "in_features " + std::to_string(e.in) +
           " is not a multiple of 32 (qweight has in / 32 * bits rows in AutoGPTQ and gptqmodel)";
  if (e.out % 32 != 0)
    return "out_features " + std::to_string(e.out) +
           " is not a multiple of 32 (gptqmodel's qzeros has out / 32 * bits columns; vLLM needs out divisible "
           "by the pack factor)";
  if (group > 0 && e.in % group != 0)
    return "in_features " + std::to_string(e.in) + " is not a multiple of group_size " + std::to_string(group);
  return "";
}

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

// Everything the quant file says about the quantizer, checked for export.
QuantConfig read_quant_config(const SafetensorsFile& qf) {
  const auto it = qf.metadata().find("quant_config");
  if (it == qf.metadata().end())
    throw InputError(qf.path() + ": no quant_config metadata (not written by streamq quantize, or damaged)");
  const nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw InputError(qf.path() + ": quant_config metadata is not valid JSON");
  QuantConfig c = quant_config_from_json(j, qf.path() + " quant_config");
  if (c.bits != 2 && c.bits != 3 && c.bits != 4 && c.bits != 8)
    throw InputError(qf.path() + ": quantized with " + std::to_string(c.bits) +
                     " bits; GPTQ checkpoints hold 2, 3, 4 or 8 bits");
  return c;
}

std::string regex_escape(const std::string& s) {
  std::string r;
  for (char ch : s) {
    if (std::strchr(".^$|()[]{}*+?\\", ch)) r += '\\';
    r += ch;
  }
  return r;
}

// The values a float-typed tensor of `dtype` holds for `v`: what the
// fake-quant writer stored for a dequantized weight.
float through_dtype(float v, DType dtype) {
  if (dtype == DType::F32) return v;
  uint64_t buf = 0;
  convert_from_f32(dtype, &v, &buf, 1);
  float back = 0;
  convert_to_f32(dtype, &buf, &back, 1);
  return back;
}

struct PackedLinear {
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales_f16;
  bool trivial_g_idx = true;  // g_idx[i] == i / group_size: no act-order permutation to honour
};

// Checks one linear against everything a loader assumes and packs it.
PackedLinear pack_linear(const SafetensorsFile& qf, const SafetensorsModel& fq, const LinearEntry& e,
                         const QuantConfig& q, CheckpointFormat format) {
  const std::string& p = e.prefix;
  const int maxq = (1 << q.bits) - 1;
  const TensorInfo& tc = expect_tensor(qf, p + ".codes", DType::U8, {e.out, e.in});
  const TensorInfo& ts = expect_tensor(qf, p + ".scales", DType::F32, {e.ngroups, e.out});
  const TensorInfo& tz = expect_tensor(qf, p + ".zeros", DType::F32, {e.ngroups, e.out});
  const TensorInfo& tg = expect_tensor(qf, p + ".g_idx", DType::I32, {e.in});
  const auto* codes = static_cast<const uint8_t*>(qf.data(tc));
  std::vector<float> scales(static_cast<size_t>(e.ngroups * e.out)), zeros(scales.size());
  std::memcpy(scales.data(), qf.data(ts), ts.nbytes);
  std::memcpy(zeros.data(), qf.data(tz), tz.nbytes);
  PackedLinear r;
  r.g_idx.resize(static_cast<size_t>(e.in));
  std::memcpy(r.g_idx.data(), qf.data(tg), tg.nbytes);

  const std::string where = qf.path() + ": " + p;
  const int64_t gsize = q.group > 0 ? q.group : e.in;
  for (int64_t i = 0; i < e.in; ++i) {
    if (r.g_idx[i] < 0 || r.g_idx[i] >= e.ngroups)
      throw InputError(where + ".g_idx[" + std::to_string(i) + "] = " + std::to_string(r.g_idx[i]) +
                       " is not a group in [0, " + std::to_string(e.ngroups) + ")");
    r.trivial_g_idx &= r.g_idx[i] == i / gsize;
  }
  for (int64_t i = 0; i < e.out * e.in; ++i)
    if (codes[i] > maxq)
      throw InputError(where + ".codes: value " + std::to_string(codes[i]) + " exceeds " + std::to_string(maxq));
  std::vector<uint8_t> stored(zeros.size());
  r.scales_f16.resize(scales.size());
  const int half = 1 << (q.bits - 1);
  for (size_t k = 0; k < scales.size(); ++k) {
    const std::string at = "[" + std::to_string(k / e.out) + ", " + std::to_string(k % e.out) + "]";
    const float s = scales[k], z = zeros[k];
    r.scales_f16[k] = f32_to_f16(s);
    if (!(s > 0) || !std::isfinite(s) || f16_to_f32(r.scales_f16[k]) != s)
      throw InputError(where + ".scales" + at + " = " + std::to_string(s) +
                       " is not a positive fp16 value; GPTQ stores fp16 scales: re-quantize with this streamq "
                       "(its grids use fp16 scales)");
    if (!(z >= 0 && z <= maxq && z == std::floor(z)))
      throw InputError(where + ".zeros" + at + " = " + std::to_string(z) + " is not an integer in [0, " +
                       std::to_string(maxq) + "]");
    if (q.sym && z != half)
      throw InputError(where + ".zeros" + at + " = " + std::to_string(z) + " but a symmetric grid's zero is " +
                       std::to_string(half) + " (loaders such as vLLM's gptq_marlin assume it and ignore qzeros)");
    if (format == CheckpointFormat::Gptq && z < 1)
      throw InputError(where + ".zeros" + at +
                       " = 0: the classic GPTQ format stores zero - 1 and cannot hold a zero point of 0; "
                       "re-quantize with --checkpoint-format gptq (the default, zero points kept >= 1) or export "
                       "with --checkpoint-format gptq_v2 (read by gptqmodel and vLLM's gptq kernel only)");
    stored[k] = static_cast<uint8_t>(format == CheckpointFormat::Gptq ? z - 1 : z);
  }
  // The fake-quant weight must be exactly what a loader reconstructs from
  // the packed tensors, or the exported model is not the evaluated one.
  const TensorInfo& tw = fq.info(p + ".weight");
  const std::vector<float> w = fq.read_f32(p + ".weight", e.out * e.in);
  for (int64_t o = 0; o < e.out; ++o)
    for (int64_t i = 0; i < e.in; ++i) {
      const size_t k = static_cast<size_t>(r.g_idx[i] * e.out + o);
      const float expect =
          through_dtype(static_cast<float>(static_cast<double>(scales[k]) * (codes[o * e.in + i] - zeros[k])), tw.dtype);
      if (w[o * e.in + i] != expect)
        throw InputError(fq.dir() + ": " + p + ".weight[" + std::to_string(o) + ", " + std::to_string(i) + "] = " +
                         std::to_string(w[o * e.in + i]) + " differs from scale * (code - zero) = " +
                         std::to_string(expect) + " in " + qf.path() +
                         ": the quantize output is inconsistent (modified, or from an older streamq); re-quantize");
    }
  r.qweight = gptq_pack_qweight(codes, e.out, e.in, q.bits);
  r.qzeros = gptq_pack_qzeros(stored.data(), e.ngroups, e.out, q.bits);
  return r;
}

// Decides which linears are packed: the loaders' shape rules, then fused
// sets together, then one decision per in-block name across all blocks (the
// exclusion rules written to config.json are per name).
void decide_exclusions(std::vector<LinearEntry>& linears, int64_t group) {
  for (auto& e : linears) e.reason = shape_reason(e, group);
  std::map<std::string, std::map<std::string, LinearEntry*>> by_block;  // block prefix -> rel -> entry
  for (auto& e : linears) by_block[e.prefix.substr(0, e.prefix.size() - e.rel.size())][e.rel] = &e;
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
  std::map<std::string, std::string> first_bad;  // rel -> an excluded module of that name
  for (const auto& e : linears)
    if (!e.reason.empty() && !first_bad.count(e.rel)) first_bad[e.rel] = e.prefix;
  for (auto& e : linears)
    if (e.reason.empty() && first_bad.count(e.rel))
      e.reason = first_bad[e.rel] + " cannot be packed and config.json's exclusion rules name modules per block-"
                 "relative name (" + e.rel + ")";
}

nlohmann::json quantization_config(const QuantConfig& q, const nlohmann::json& settings, const GptqExportReport& rep,
                                   const std::vector<LinearEntry>& linears, std::ostream* log) {
  double damp = q.percdamp;
  if (!(damp > 0 && damp < 1)) {
    // transformers and optimum reject damp_percent outside (0, 1) on load;
    // the field only documents the quantization, the real value is in meta.
    damp = std::clamp(damp, 1e-6, 0.999999);
    if (log) *log << "streamq export: note: damp_percent written as " << damp << " (loaders require (0, 1)); --percdamp was " << q.percdamp << "\n";
  }
  nlohmann::json c{{"quant_method", "gptq"},
                   {"bits", q.bits},
                   {"group_size", q.group > 0 ? q.group : -1},
                   {"desc_act", rep.desc_act},
                   {"sym", q.sym},
                   {"damp_percent", damp},
                   {"true_sequential", true},  // streamq always quantizes sub-layer groups in order
                   {"static_groups", q.static_groups},
                   {"checkpoint_format", to_string(rep.format)},
                   {"pack_dtype", "int32"},
                   {"lm_head", false}};
  if (!rep.excluded.empty()) {
    // optimum (transformers) and vLLM: only these in-block names are GPTQ
    // modules; gptqmodel and vLLM: "-:" rules skip the rest.
    std::vector<std::string> keep;
    std::set<std::string> excluded_rel;
    for (const auto& e : linears) {
      if (!e.reason.empty()) excluded_rel.insert(e.rel);
      else if (std::find(keep.begin(), keep.end(), e.rel) == keep.end()) keep.push_back(e.rel);
    }
    c["modules_in_block_to_quantize"] = nlohmann::json::array({keep});
    nlohmann::json dyn = nlohmann::json::object();
    for (const auto& rel : excluded_rel) dyn["-:.*\\." + regex_escape(rel) + "$"] = nlohmann::json::object();
    for (const FusedSet& set : fused_sets()) {
      bool all = true;
      for (const auto& m : set.members) all &= excluded_rel.count(m) > 0;
      if (all) dyn["-:.*\\." + regex_escape(set.fused) + "$"] = nlohmann::json::object();
    }
    c["dynamic"] = dyn;
  }
  c["meta"] = {{"quantizer", {std::string("streamq:") + STREAMQ_VERSION}},
               {"streamq_method", q.describe()},
               {"streamq_quant_config", quant_config_to_json(q)}};
  if (!settings.is_null()) c["meta"]["streamq_settings"] = settings;
  return c;
}

}  // namespace

nlohmann::json GptqExportReport::to_json() const {
  nlohmann::json j{{"quant_dir", quant_dir},       {"out_dir", out_dir}, {"checkpoint_format", to_string(format)},
                   {"bits", bits},                 {"group_size", group}, {"sym", sym},
                   {"desc_act", desc_act},         {"packed", packed},   {"files", files}};
  j["excluded"] = nlohmann::json::array();
  for (const auto& e : excluded) j["excluded"].push_back({{"module", e.module}, {"reason", e.reason}});
  return j;
}

GptqExportReport write_gptq_checkpoint(const std::string& quant_dir, const std::string& dest_dir,
                                       const GptqExportOptions& opts, std::ostream* log) {
  std::error_code ec;
  if (fs::equivalent(quant_dir, dest_dir, ec))
    throw InputError(dest_dir + ": the GPTQ checkpoint must be written to a directory other than its source");
  const std::string qpath = quant_dir + "/" + kQuantFile;
  if (!fs::is_regular_file(qpath, ec))
    throw InputError(quant_dir + ": no " + std::string(kQuantFile) +
                     ": --from must be the output directory of streamq quantize");
  const std::unique_ptr<SafetensorsFile> qf = SafetensorsFile::open(qpath);
  const QuantConfig q = read_quant_config(*qf);
  const std::unique_ptr<SafetensorsModel> fq = SafetensorsModel::open(quant_dir);
  nlohmann::json config = nlohmann::json::parse(read_file(quant_dir + "/config.json"), nullptr, false);
  if (config.is_discarded() || !config.is_object())
    throw InputError(quant_dir + "/config.json: not a JSON object");

  std::vector<LinearEntry> linears;
  const std::string suffix = ".codes";
  for (const TensorInfo& t : qf->tensors()) {
    if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    LinearEntry e;
    e.prefix = t.name.substr(0, t.name.size() - suffix.size());
    e.rel = relative_name(e.prefix);
    if (t.shape.size() != 2) throw InputError(qpath + ": tensor " + t.name + " is not 2-D");
    e.out = t.shape[0];
    e.in = t.shape[1];
    e.ngroups = q.group > 0 ? (e.in + q.group - 1) / q.group : 1;
    if (!fq->has(e.prefix + ".weight"))
      throw InputError(quant_dir + ": quantized linear " + e.prefix + " has no " + e.prefix + ".weight in the model");
    linears.push_back(std::move(e));
  }
  if (linears.empty()) throw InputError(qpath + ": no quantized linears (no *.codes tensors)");
  decide_exclusions(linears, q.group);

  GptqExportReport rep;
  rep.quant_dir = quant_dir;
  rep.out_dir = dest_dir;
  rep.format = opts.format;
  rep.bits = q.bits;
  rep.group = q.group > 0 ? q.group : -1;
  rep.sym = q.sym;
  std::map<std::string, const LinearEntry*> packed;  // "<prefix>.weight" -> entry
  for (const auto& e : linears) {
    if (e.reason.empty()) {
      packed[e.prefix + ".weight"] = &e;
      rep.packed.push_back(e.prefix);
    } else {
      rep.excluded.push_back({e.prefix, e.reason});
    }
  }

  std::vector<TensorSpec> plan;
  for (const auto& name : fq->tensor_names()) {
    const auto it = packed.find(name);
    if (it == packed.end()) {
      const TensorInfo& t = fq->info(name);
      plan.push_back({name, t.dtype, t.shape});
      continue;
    }
    const LinearEntry& e = *it->second;
    plan.push_back({e.prefix + ".qweight", DType::I32, {gptq_packed_words(e.in, q.bits), e.out}});
    plan.push_back({e.prefix + ".qzeros", DType::I32, {e.ngroups, gptq_packed_words(e.out, q.bits)}});
    plan.push_back({e.prefix + ".scales", DType::F16, {e.ngroups, e.out}});
    plan.push_back({e.prefix + ".g_idx", DType::I32, {e.in}});
  }
  SafetensorsWriter writer(dest_dir, plan, {{"format", "pt"}, {"streamq", q.describe()}}, opts.max_shard_bytes);
  for (const auto& name : fq->tensor_names()) {
    const auto it = packed.find(name);
    if (it == packed.end()) {
      const TensorInfo& t = fq->info(name);
      writer.write(name, fq->file_of(name).data(t), t.nbytes);
      continue;
    }
    const LinearEntry& e = *it->second;
    const PackedLinear pl = pack_linear(*qf, *fq, e, q, opts.format);
    rep.desc_act |= !pl.trivial_g_idx;
    writer.write(e.prefix + ".qweight", pl.qweight.data(), pl.qweight.size() * sizeof(int32_t));
    writer.write(e.prefix + ".qzeros", pl.qzeros.data(), pl.qzeros.size() * sizeof(int32_t));
    writer.write(e.prefix + ".scales", pl.scales_f16.data(), pl.scales_f16.size() * sizeof(uint16_t));
    writer.write(e.prefix + ".g_idx", pl.g_idx.data(), pl.g_idx.size() * sizeof(int32_t));
  }
  writer.finish();
  rep.files = writer.file_names();

  const nlohmann::json qc = quantization_config(q, recorded_settings(*qf), rep, linears, log);
  config["quantization_config"] = qc;
  atomic_write_file(dest_dir + "/config.json", config.dump(2) + "\n");
  // AutoGPTQ (and vLLM without quantization_config) read quantize_config.json.
  atomic_write_file(dest_dir + "/quantize_config.json", qc.dump(2) + "\n");
  atomic_write_file(dest_dir + "/" + kGptqExportReportName, rep.to_json().dump(1) + "\n");
  if (log) {
    *log << "streamq export: " << rep.packed.size() << " linears packed (w" << q.bits << " "
         << (rep.group > 0 ? "g" + std::to_string(rep.group) : std::string("per-channel")) << " "
         << (q.sym ? "sym" : "asym") << (rep.desc_act ? " desc_act" : "") << ", checkpoint_format "
         << to_string(opts.format) << ")";
    if (!rep.excluded.empty()) *log << "; " << rep.excluded.size() << " written dense (fake-quant weights):";
    *log << "\n";
    for (const auto& e : rep.excluded) *log << "  dense: " << e.module << ": " << e.reason << "\n";
  }
  return rep;
}

GptqExportReport export_gptq(const std::string& quant_dir, const std::string& out_dir, const GptqExportOptions& opts,
                             std::ostream* log) {
  std::error_code ec;
  if (fs::equivalent(quant_dir, out_dir, ec))
    throw InputError("--out " + out_dir + " is --from: write the GPTQ checkpoint to another directory");
  OutputDir out(out_dir, opts.overwrite);
  out.copy_side_files(quant_dir);
  // The quantize report describes the fake-quant output, not this checkpoint.
  fs::remove(out.staging_path() + "/streamq_report.json", ec);
  GptqExportReport rep = write_gptq_checkpoint(quant_dir, out.staging_path(), opts, log);
  rep.out_dir = out_dir;
  atomic_write_file(out.staging_path() + "/" + kGptqExportReportName, rep.to_json().dump(1) + "\n");
  out.commit();
  return rep;
}

}  // namespace streamq
