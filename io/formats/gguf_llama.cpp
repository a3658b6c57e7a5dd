// The HF view of a llama-architecture GGUF: tensor names mapped to HF's,
// shapes checked against the hyper-parameters, llama.cpp's RoPE row
// permutation of q/k undone, and an HF LlamaConfig built from llama.* metadata.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>

#include "src/core/error.h"
#include "io/formats/gguf.h"

namespace streamq {

using nlohmann::json;

namespace {

// The one decimal that reads back as the same float32, shortest first, so a
// stored 1e-5f becomes 1e-05 in config.json rather than 9.99999974737875e-06.
double shortest_decimal(float f) {
  char buf[32];
  for (int prec = 6; prec <= 9; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return std::strtod(buf, nullptr);
}

struct LlamaDims {
  int64_t hidden = 0, inter = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
};

// Per-layer GGUF tensor stems, their HF module names and [rows, cols] in HF
// layout (cols 0 for norms); `rope` marks the permuted q/k projections.
struct LayerRole {
  const char* gguf;
  const char* hf;
  bool rope;
};
constexpr LayerRole kLayerRoles[] = {
    {"attn_norm", "input_layernorm", false},   {"attn_q", "self_attn.q_proj", true},
    {"attn_k", "self_attn.k_proj", true},      {"attn_v", "self_attn.v_proj", false},
    {"attn_output", "self_attn.o_proj", false}, {"ffn_norm", "post_attention_layernorm", false},
    {"ffn_gate", "mlp.gate_proj", false},      {"ffn_up", "mlp.up_proj", false},
    {"ffn_down", "mlp.down_proj", false},
};

// HF [rows, cols] of a per-layer role; cols 0 for a norm (a vector).
std::pair<int64_t, int64_t> role_shape(const std::string& gguf, const LlamaDims& d) {
  const int64_t q = d.heads * d.head_dim, kv = d.kv_heads * d.head_dim;
  if (gguf == "attn_norm" || gguf == "ffn_norm") return {d.hidden, 0};
  if (gguf == "attn_q") return {q, d.hidden};
  if (gguf == "attn_k" || gguf == "attn_v") return {kv, d.hidden};
  if (gguf == "attn_output") return {d.hidden, q};
  if (gguf == "ffn_down") return {d.hidden, d.inter};
  return {d.inter, d.hidden};  // ffn_gate, ffn_up
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace

void GgufFile::build_llama_view() {
  const auto positive = [&](const std::string& key, int64_t v) {
    if (v <= 0) throw InputError(path_ + ": metadata '" + key + "' is " + std::to_string(v) + ", expected > 0");
    return v;
  };
  if (meta_int("llama.expert_count", 0) > 0)
    throw InputError(path_ + ": mixture-of-experts llama models (llama.expert_count) are not supported");
  LlamaDims d;
  d.hidden = positive("llama.embedding_length", meta_int("llama.embedding_length"));
  d.inter = positive("llama.feed_forward_length", meta_int("llama.feed_forward_length"));
  d.layers = positive("llama.block_count", meta_int("llama.block_count"));
  d.heads = positive("llama.attention.head_count", meta_int("llama.attention.head_count"));
  d.kv_heads = positive("llama.attention.head_count_kv", meta_int("llama.attention.head_count_kv", d.heads));
  if (d.heads % d.kv_heads != 0)
    throw InputError(path_ + ": llama.attention.head_count " + std::to_string(d.heads) +
                     " is not a multiple of head_count_kv " + std::to_string(d.kv_heads));
  if (!find("llama.attention.key_length") && d.hidden % d.heads != 0)
    throw InputError(path_ + ": llama.embedding_length " + std::to_string(d.hidden) +
                     " is not divisible by the head count and no llama.attention.key_length is given");
  d.head_dim = positive("llama.attention.key_length", meta_int("llama.attention.key_length", d.hidden / d.heads));
  if (meta_int("llama.attention.value_length", d.head_dim) != d.head_dim)
    throw InputError(path_ + ": llama.attention.value_length differs from key_length; HF Llama needs them equal");
  if (d.head_dim % 2 != 0)
    throw InputError(path_ + ": head dimension " + std::to_string(d.head_dim) + " is odd; RoPE needs pairs");
  const int64_t rope_dims = meta_int("llama.rope.dimension_count", d.head_dim);
  if (rope_dims != d.head_dim)
    throw InputError(path_ + ": llama.rope.dimension_count " + std::to_string(rope_dims) + " differs from the head "
                     "dimension " + std::to_string(d.head_dim) + " (partial RoPE is not HF Llama)");

  const GgufTensorInfo* embd = find_tensor("token_embd.weight");
  if (!embd) throw InputError(path_ + ": missing tensor 'token_embd.weight'");
  if (embd->ne.size() != 2)
    throw InputError(path_ + ": tensor 'token_embd.weight' has " + std::to_string(embd->ne.size()) +
                     " dims, expected 2");
  d.vocab = embd->ne[1];
  if (meta_int("llama.vocab_size", d.vocab) != d.vocab)
    throw InputError(path_ + ": llama.vocab_size " + std::to_string(meta_int("llama.vocab_size")) +
                     " differs from token_embd.weight's " + std::to_string(d.vocab) + " rows");

  // Expected tensors, in HF checkpoint order, with their HF shapes.
  struct Want {
    std::string gguf, hf;
    std::vector<int64_t> shape;
    int64_t rope_heads;
    bool optional;
  };
  std::vector<Want> want;
  want.push_back({"token_embd.weight", "model.embed_tokens.weight", {d.vocab, d.hidden}, 0, false});
  bool attn_bias = false, mlp_bias = false;
  // Every layer has its tensors in the file: a block_count past the tensor
  // count is refused before a loop over it (fuzz_gguf: 2^40 layers hung).
  if (d.layers > static_cast<int64_t>(tensors_.size()) / static_cast<int64_t>(std::size(kLayerRoles)))
    throw InputError(path_ + ": llama.block_count " + std::to_string(d.layers) + " needs " +
                     std::to_string(std::size(kLayerRoles)) + " tensors per layer, the file has " +
                     std::to_string(tensors_.size()) + " tensors in all");
  for (int64_t l = 0; l < d.layers; ++l) {
    const std::string g = "blk." + std::to_string(l) + ".", h = "model.layers." + std::to_string(l) + ".";
    for (const LayerRole& r : kLayerRoles) {
      const auto [rows, cols] = role_shape(r.gguf, d);
      const int64_t rope_heads = !r.rope ? 0 : std::string(r.gguf) == "attn_q" ? d.heads : d.kv_heads;
      want.push_back({g + r.gguf + ".weight", h + r.hf + ".weight",
                      cols ? std::vector<int64_t>{rows, cols} : std::vector<int64_t>{rows}, rope_heads, false});
      if (cols == 0) continue;
      const std::string bias = g + r.gguf + ".bias";
      if (!find_tensor(bias)) continue;
      (std::string(r.gguf).rfind("attn", 0) == 0 ? attn_bias : mlp_bias) = true;
      want.push_back({bias, h + r.hf + ".bias", {rows}, rope_heads, false});
    }
  }
  want.push_back({"output_norm.weight", "model.norm.weight", {d.hidden}, 0, false});
  want.push_back({"output.weight", "lm_head.weight", {d.vocab, d.hidden}, 0, true});

  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < tensors_.size(); ++i) index[tensors_[i].name] = i;
  for (const Want& w : want) {
    const auto it = index.find(w.gguf);
    if (it == index.end()) {
      if (w.optional) continue;
      throw InputError(path_ + ": missing tensor '" + w.gguf + "' (HF '" + w.hf + "')");
    }
    const GgufTensorInfo& t = tensors_[it->second];
    const std::vector<int64_t> hf_shape(t.ne.rbegin(), t.ne.rend());
    if (hf_shape != w.shape)
      throw InputError(path_ + ": tensor '" + w.gguf + "' has HF shape " + shape_text(hf_shape) + ", expected " +
                       shape_text(w.shape) + " from the llama.* hyper-parameters");
    hf_.push_back({w.hf, it->second, w.rope_heads});
    index.erase(it);
  }
  if (!index.empty()) {
    const std::string name = index.begin()->first;
    const std::string hint = name == "rope_freqs.weight" ? " (llama3 RoPE scaling factors are not supported)" : "";
    throw InputError(path_ + ": tensor '" + name + "' has no HF Llama equivalent" + hint + "; " +
                     std::to_string(index.size()) + " tensor(s) unmapped");
  }

  json c;
  c["architectures"] = json::array({"LlamaForCausalLM"});
  c["model_type"] = "llama";
  c["hidden_size"] = d.hidden;
  c["intermediate_size"] = d.inter;
  c["num_hidden_layers"] = d.layers;
  c["num_attention_heads"] = d.heads;
  c["num_key_value_heads"] = d.kv_heads;
  c["head_dim"] = d.head_dim;
  c["hidden_act"] = "silu";
  c["vocab_size"] = d.vocab;
  c["max_position_embeddings"] = meta_int("llama.context_length", 2048);
  const std::string eps_key = "llama.attention.layer_norm_rms_epsilon";
  if (!find(eps_key)) throw InputError(path_ + ": missing metadata '" + eps_key + "'");
  c["rms_norm_eps"] = shortest_decimal(static_cast<float>(meta_double(eps_key, 0)));
  c["rope_theta"] = shortest_decimal(static_cast<float>(meta_double("llama.rope.freq_base", 10000.0)));
  const std::string scaling = meta_string("llama.rope.scaling.type", "none");
  if (scaling == "linear") {
    c["rope_scaling"] = {{"rope_type", "linear"},
                         {"factor", shortest_decimal(static_cast<float>(meta_double("llama.rope.scaling.factor", 1)))}};
  } else if (scaling == "none") {
    c["rope_scaling"] = nullptr;
  } else {
    throw InputError(path_ + ": llama.rope.scaling.type '" + scaling + "' is not supported (none, linear)");
  }
  c["tie_word_embeddings"] = find_tensor("output.weight") == nullptr;
  c["attention_bias"] = attn_bias;
  c["mlp_bias"] = mlp_bias;
  for (const char* k : {"bos", "eos", "padding"}) {
    const std::string key = std::string("tokenizer.ggml.") + k + "_token_id";
    if (find(key)) c[std::string(k == std::string("padding") ? "pad" : k) + "_token_id"] = meta_int(key);
  }
  c["torch_dtype"] = "float32";
  hf_config_ = std::move(c);
}

const GgufFile::HfEntry& GgufFile::hf_entry(const std::string& hf_name) const {
  if (!hf_unavailable_.empty()) throw InputError(path_ + ": no HF view: " + hf_unavailable_);
  for (const HfEntry& e : hf_)
    if (e.hf_name == hf_name) return e;
  throw InputError(path_ + ": no tensor maps to HF name '" + hf_name + "'");
}

std::vector<std::string> GgufFile::hf_tensor_names() const {
  if (!hf_unavailable_.empty()) throw InputError(path_ + ": no HF view: " + hf_unavailable_);
  std::vector<std::string> names;
  for (const HfEntry& e : hf_) names.push_back(e.hf_name);
  return names;
}

std::vector<int64_t> GgufFile::hf_shape(const std::string& hf_name) const {
  const GgufTensorInfo& t = tensors_[hf_entry(hf_name).tensor];
  return std::vector<int64_t>(t.ne.rbegin(), t.ne.rend());
}

json GgufFile::hf_config() const {
  if (!hf_unavailable_.empty()) throw InputError(path_ + ": no HF view: " + hf_unavailable_);
  return hf_config_;
}

std::vector<float> GgufFile::read_hf_f32(const std::string& hf_name) const {
  const HfEntry& e = hf_entry(hf_name);
  const GgufTensorInfo& t = tensors_[e.tensor];
  std::vector<float> stored = read_f32(t);
  if (e.rope_heads == 0) return stored;

  // llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute) stores q/k rows as
  //   w.reshape(n_head, 2, head_dim / 2, cols).swapaxes(1, 2).reshape(rows, cols)
  // i.e. each head's rotate_half halves interleaved: GGUF row h*hd + 2*i + j
  // holds HF row h*hd + j*hd/2 + i. Reading it back puts the halves back.
  const int64_t rows = t.ne.size() == 1 ? t.ne[0] : t.ne[1];
  const int64_t cols = t.ne.size() == 1 ? 1 : t.ne[0];
  const int64_t hd = rows / e.rope_heads, half = hd / 2;
  if (rows % e.rope_heads != 0 || hd % 2 != 0)
    throw InternalError(path_ + ": tensor '" + t.name + "': " + std::to_string(rows) + " rows do not split into " +
                        std::to_string(e.rope_heads) + " heads of even size (checked at open)");
  std::vector<float> out(stored.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = r / hd, j = (r % hd) / half, i = (r % hd) % half;
    const int64_t g = h * hd + 2 * i + j;
    std::copy(stored.begin() + g * cols, stored.begin() + (g + 1) * cols, out.begin() + r * cols);
  }
  return out;
}

}  // namespace streamq
