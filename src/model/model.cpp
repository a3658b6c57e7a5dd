// Model loading (per block, validated) and the embedding / head ends.
#include "src/model/model.h"
#include "src/model/resident_block.h"

#include <cmath>
#include <cstring>

#include "src/core/error.h"

namespace streamq {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

void check_shape(const SafetensorsModel& st, const std::string& name, std::vector<int64_t> want) {
  const TensorInfo& t = st.info(name);
  if (t.shape != want)
    throw InputError(st.file_of(name).path() + ": tensor '" + name + "' has shape " + shape_str(t.shape) +
                     ", config.json implies " + shape_str(want));
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    throw InputError(st.file_of(name).path() + ": tensor '" + name + "' has dtype " + dtype_name(t.dtype) +
                     "; streamq reads F32, F16 and BF16 weights");
}

std::vector<float> read_checked(const SafetensorsModel& st, const std::string& name) {
  std::vector<float> v = st.read_f32(name);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw InputError(st.file_of(name).path() + ": tensor '" + name + "' has a non-finite value at element " +
                       std::to_string(i) + " (NaN/Inf weights cannot be quantized)");
  return v;
}

}  // namespace

Model::Model(const std::string& dir) : dir_(dir), cfg_(load_model_config(dir)), st_(SafetensorsModel::open(dir)) {
  const auto& c = cfg_;
  check_shape(*st_, "model.embed_tokens.weight", {c.vocab, c.hidden});
  check_shape(*st_, "model.norm.weight", {c.hidden});
  if (!c.tie_word_embeddings) check_shape(*st_, "lm_head.weight", {c.vocab, c.hidden});
  for (int64_t b = 0; b < c.layers; ++b) {
    const std::string p = block_prefix(b);
    check_shape(*st_, p + "input_layernorm.weight", {c.hidden});
    check_shape(*st_, p + "post_attention_layernorm.weight", {c.hidden});
    if (c.qk_norm) {
      check_shape(*st_, p + "self_attn.q_norm.weight", {c.head_dim});
      check_shape(*st_, p + "self_attn.k_norm.weight", {c.head_dim});
    }
    for (const auto& l : block_linears(c)) {
      check_shape(*st_, p + l.name + ".weight", {l.out, l.in});
      if (l.has_bias) check_shape(*st_, p + l.name + ".bias", {l.out});
    }
  }
  final_norm_ = read_checked(*st_, "model.norm.weight");
}

BlockWeights Model::load_block(int64_t b) const {
  if (b < 0 || b >= cfg_.layers) throw InternalError("load_block: block " + std::to_string(b) + " out of range");
  BlockWeights w;
  w.index = b;
  const std::string p = block_prefix(b);
  w.input_norm = read_checked(*st_, p + "input_layernorm.weight");
  w.post_norm = read_checked(*st_, p + "post_attention_layernorm.weight");
  if (cfg_.qk_norm) {
    w.q_norm = read_checked(*st_, p + "self_attn.q_norm.weight");
    w.k_norm = read_checked(*st_, p + "self_attn.k_norm.weight");
  }
  for (const auto& l : block_linears(cfg_)) {
    Linear lin;
    lin.w = read_checked(*st_, p + l.name + ".weight");
    if (l.has_bias) lin.b = read_checked(*st_, p + l.name + ".bias");
    w.linears.emplace(l.name, std::move(lin));
  }
  return w;
}

std::vector<std::string> Model::block_tensor_names(int64_t b) const {
  if (b < 0 || b >= cfg_.layers) throw InternalError("block " + std::to_string(b) + " out of range");
  const std::string p = block_prefix(b);
  std::vector<std::string> names = {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"};
  if (cfg_.qk_norm) {
    names.push_back(p + "self_attn.q_norm.weight");
    names.push_back(p + "self_attn.k_norm.weight");
  }
  for (const auto& l : block_linears(cfg_)) {
    names.push_back(p + l.name + ".weight");
    if (l.has_bias) names.push_back(p + l.name + ".bias");
  }
  return names;
}

uint64_t Model::release_block(int64_t b) const { return st_->release(block_tensor_names(b)); }

uint64_t Model::read_ahead_block(int64_t b) const { return st_->read_ahead(block_tensor_names(b)); }

uint64_t Model::block_stored_bytes(int64_t b) const {
  uint64_t n = 0;
  for (const auto& name : block_tensor_names(b)) n += st_->info(name).nbytes;
  return n;
}

void Model::embed(const int32_t* ids, int64_t tokens, float* out) const {
  const std::string name = "model.embed_tokens.weight";
  const TensorInfo& t = st_->info(name);
  const auto* base = static_cast<const uint8_t*>(st_->file_of(name).data(t));
  const size_t row_bytes = static_cast<size_t>(cfg_.hidden) * dtype_size(t.dtype);
  for (int64_t i = 0; i < tokens; ++i) {
    if (ids[i] < 0 || ids[i] >= cfg_.vocab)
      throw InputError("token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                       " is outside the model's vocabulary [0, " + std::to_string(cfg_.vocab) + ")");
    convert_to_f32(t.dtype, base + static_cast<size_t>(ids[i]) * row_bytes, out + i * cfg_.hidden,
                   static_cast<size_t>(cfg_.hidden));
  }
}

const std::vector<float>& Model::head_weight() const {
  if (head_w_.empty())
    head_w_ = read_checked(*st_, cfg_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  return head_w_;
}

void Model::head(Backend& be, const float* x, int64_t tokens, float* logits) const {
  ResidentHead(be, *this).logits(x, tokens, logits);
}

RopeTable Model::rope_table(int64_t max_pos) {
  if (max_pos > rope_max_pos_) {
    build_rope_tables(cfg_, max_pos, &rope_cos_, &rope_sin_);
    rope_max_pos_ = max_pos;
  }
  return RopeTable{rope_max_pos_, cfg_.head_dim / 2, rope_cos_.data(), rope_sin_.data()};
}

}  // namespace streamq
