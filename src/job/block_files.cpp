// Block files and the checkpoint assembled from them.
#include "src/job/block_files.h"

#include <memory>

#include "src/core/error.h"
#include "src/model/architecture.h"

namespace streamq {
namespace {

void quant_result_specs(const std::string& p, const LinearDesc& l, const QuantConfig& q,
                        std::vector<TensorSpec>* plan) {
  const int64_t ngroups = q.group > 0 ? (l.in + q.group - 1) / q.group : 1;
  plan->push_back({p + ".codes", DType::U8, {l.out, l.in}});
  plan->push_back({p + ".scales", DType::F32, {ngroups, l.out}});
  plan->push_back({p + ".zeros", DType::F32, {ngroups, l.out}});
  plan->push_back({p + ".g_idx", DType::I32, {l.in}});
}

void copy_tensor(SafetensorsWriter& w, const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  if (!t) throw InputError(f.path() + ": tensor " + name + " is missing");
  w.write(name, f.data(*t), t->nbytes);
}

}  // namespace

std::vector<std::string> rotated_block_tensors(const ModelConfig& cfg, RotatedTensors rotated) {
  std::vector<std::string> names;
  if (rotated.residual) names = {"input_layernorm.weight", "post_attention_layernorm.weight"};
  for (const auto& l : block_linears(cfg)) {
    if (!l.has_bias) continue;
    if ((rotated.residual && (l.name == "self_attn.o_proj" || l.name == "mlp.down_proj")) ||
        (rotated.heads && l.name == "self_attn.v_proj"))
      names.push_back(l.name + ".bias");
  }
  return names;
}

std::vector<TensorSpec> block_file_plan(const ModelConfig& cfg, const SafetensorsModel& st, const QuantConfig& q,
                                        int64_t b, RotatedTensors rotated) {
  std::vector<TensorSpec> plan;
  for (const auto& l : block_linears(cfg)) {
    const std::string p = block_prefix(b) + l.name;
    const TensorInfo& t = st.info(p + ".weight");
    plan.push_back({p + ".weight", t.dtype, t.shape});
    quant_result_specs(p, l, q, &plan);
  }
  for (const std::string& rel : rotated_block_tensors(cfg, rotated)) {
    const TensorInfo& t = st.info(block_prefix(b) + rel);
    plan.push_back({block_prefix(b) + rel, t.dtype, t.shape});
  }
  return plan;
}

void write_quant_result(SafetensorsWriter& w, const std::string& p, const QuantResult& r) {
  w.write(p + ".codes", r.codes.data(), r.codes.size());
  std::vector<float> f(r.scales.begin(), r.scales.end());
  w.write_f32(p + ".scales", f.data(), static_cast<int64_t>(f.size()));
  f.assign(r.zeros.begin(), r.zeros.end());
  w.write_f32(p + ".zeros", f.data(), static_cast<int64_t>(f.size()));
  w.write(p + ".g_idx", r.g_idx.data(), r.g_idx.size() * sizeof(int32_t));
}

void assemble_checkpoint(const AssembleInput& in, const std::string& out_dir) {
  const ModelConfig& cfg = *in.cfg;
  const SafetensorsModel& st = *in.source;
  std::vector<TensorSpec> fq_plan, qr_plan;
  std::unique_ptr<SafetensorsFile> ends;
  if (!in.ends_path.empty()) ends = SafetensorsFile::open(in.ends_path);
  for (const auto& name : st.tensor_names()) {
    const TensorInfo& t = st.info(name);
    fq_plan.push_back({name, t.dtype, t.shape});
  }
  if (ends)
    for (const TensorInfo& t : ends->tensors())
      if (!st.has(t.name)) fq_plan.push_back({t.name, t.dtype, t.shape});
  for (int64_t b = 0; b < cfg.layers; ++b)
    for (const auto& l : block_linears(cfg)) quant_result_specs(block_prefix(b) + l.name, l, in.quant, &qr_plan);
  SafetensorsWriter fq(out_dir, fq_plan, in.fq_metadata, in.max_shard_bytes);
  SafetensorsWriter qr(out_dir, qr_plan, in.qr_metadata, UINT64_MAX, "streamq_quant");
  auto tick = [&] {
    if (in.on_tensor) in.on_tensor();
  };
  auto copy_source = [&](const std::string& name) {
    const TensorInfo& t = st.info(name);
    fq.write(name, st.file_of(name).data(t), t.nbytes);
  };
  for (const auto& name : st.tensor_names()) {
    if (name.rfind("model.layers.", 0) == 0) continue;
    if (ends && ends->find(name)) copy_tensor(fq, *ends, name);
    else copy_source(name);
    tick();
  }
  if (ends)
    for (const TensorInfo& t : ends->tensors())
      if (!st.has(t.name)) {
        copy_tensor(fq, *ends, t.name);
        tick();
      }
  for (int64_t b = 0; b < cfg.layers; ++b) {
    const auto block = SafetensorsFile::open(in.block_path(b));
    for (const auto& name : st.tensor_names()) {
      if (name.rfind(block_prefix(b), 0) != 0) continue;
      if (block->find(name)) copy_tensor(fq, *block, name);  // a quantized linear's weight
      else copy_source(name);
      tick();
    }
    for (const auto& l : block_linears(cfg)) {
      const std::string p = block_prefix(b) + l.name;
      for (const char* part : {".codes", ".scales", ".zeros", ".g_idx"}) copy_tensor(qr, *block, p + part);
      tick();
    }
  }
  fq.finish();
  qr.finish();
}

}  // namespace streamq
