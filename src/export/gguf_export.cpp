// GGUF export of a llama quantize output: metadata from config.json, the
// tokenizer from tokenizer.json, tensors renamed and q/k rows permuted as
// llama.cpp's converter does, quantized linears encoded block by block.
#include "src/export/gguf_export.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/file/file_util.h"
#include "io/formats/gguf.h"
#include "io/formats/gguf_writer.h"
#include "io/formats/safetensors.h"
#include "src/export/quant_output.h"

#ifndef STREAMQ_VERSION
#define STREAMQ_VERSION "unknown"
#endif

namespace fs = std::filesystem;
using nlohmann::json;

namespace streamq {

const char* to_string(GgufQuantType t) {
  return t == GgufQuantType::Q4_0 ? "Q4_0" : (t == GgufQuantType::Q4_1 ? "Q4_1" : "Q8_0");
}

GgufQuantType parse_gguf_quant_type(const std::string& s) {
  if (s == "Q4_0" || s == "q4_0") return GgufQuantType::Q4_0;
  if (s == "Q4_1" || s == "q4_1") return GgufQuantType::Q4_1;
  if (s == "Q8_0" || s == "q8_0") return GgufQuantType::Q8_0;
  throw InputError("--gguf-type '" + s + "': expected Q4_0, Q4_1 or Q8_0");
}

std::string gguf_grid_conflict(GgufQuantType t, const QuantConfig& q) {
  const int bits = t == GgufQuantType::Q8_0 ? 8 : 4;
  if (q.bits != bits) return "--bits " + std::to_string(q.bits);
  if (q.group != kGgmlBlock) return "--group " + std::to_string(q.group);
  if (t == GgufQuantType::Q4_1 && q.sym) return "--sym";
  if (t != GgufQuantType::Q4_1 && !q.sym) return "--asym";
  // Two-stage grids are fixed in column order before the sweep, as static groups are.
  if (q.act_order && !q.static_groups && !q.two_stage() && q.method != MethodKind::Rtn)
    return "--act-order without --static-groups";
  return "";
}

GgufQuantType gguf_type_of(const QuantConfig& q) {
  return q.bits == 8 ? GgufQuantType::Q8_0 : (q.free_min ? GgufQuantType::Q4_1 : GgufQuantType::Q4_0);
}

void apply_gguf_grid(GgufQuantType t, QuantConfig& q) {
  q.bits = t == GgufQuantType::Q8_0 ? 8 : 4;
  q.group = kGgmlBlock;
  q.sym = t != GgufQuantType::Q4_1;
  q.free_min = t == GgufQuantType::Q4_1;
}

namespace {

// llama.cpp's llama_ftype (llama.h) and ggml type of each export type.
uint32_t file_type(GgufQuantType t) { return t == GgufQuantType::Q4_0 ? 2 : (t == GgufQuantType::Q4_1 ? 3 : 7); }
uint32_t ggml_type_of(GgufQuantType t) {
  return t == GgufQuantType::Q4_0 ? ggml_type::Q4_0 : (t == GgufQuantType::Q4_1 ? ggml_type::Q4_1 : ggml_type::Q8_0);
}
uint32_t ggml_float_type(DType d, const std::string& where) {
  if (d == DType::F32) return ggml_type::F32;
  if (d == DType::F16) return ggml_type::F16;
  if (d == DType::BF16) return ggml_type::BF16;
  throw InputError(where + ": dtype " + dtype_name(d) + " has no GGUF float type");
}

// The expected tensors in llama.cpp's order with their GGUF names (as
// convert_hf_to_gguf.py's tensor map names them) and q/k head counts.
struct Planned {
  std::string hf, gguf;
  int64_t rope_heads = 0;
};

struct Dims {
  int64_t hidden, inter, layers, heads, kv_heads, head_dim, vocab;
};

int64_t cfg_int(const json& c, const char* key, const std::string& where) {
  if (!c.contains(key) || !c[key].is_number_integer())
    throw InputError(where + ": config.json has no integer '" + std::string(key) + "'");
  return c[key].get<int64_t>();
}

Dims read_dims(const json& c, const std::string& where) {
  const std::string type = c.value("model_type", std::string());
  if (type != "llama")
    throw InputError(where + ": model_type '" + type + "': the GGUF export writes the llama architecture only");
  Dims d;
  d.hidden = cfg_int(c, "hidden_size", where);
  d.inter = cfg_int(c, "intermediate_size", where);
  d.layers = cfg_int(c, "num_hidden_layers", where);
  d.heads = cfg_int(c, "num_attention_heads", where);
  d.kv_heads = c.contains("num_key_value_heads") ? cfg_int(c, "num_key_value_heads", where) : d.heads;
  d.head_dim = c.contains("head_dim") && c["head_dim"].is_number_integer() ? c["head_dim"].get<int64_t>()
                                                                           : d.hidden / d.heads;
  d.vocab = cfg_int(c, "vocab_size", where);
  return d;
}

std::vector<Planned> plan_tensors(const Dims& d, const SafetensorsModel& fq) {
  static const std::pair<const char*, const char*> roles[] = {
      {"input_layernorm", "attn_norm"},  {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},    {"self_attn.o_proj", "attn_output"},
      {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  std::vector<Planned> p{{"model.embed_tokens.weight", "token_embd.weight", 0}};
  for (int64_t l = 0; l < d.layers; ++l) {
    const std::string h = "model.layers." + std::to_string(l) + ".", g = "blk." + std::to_string(l) + ".";
    for (const auto& [hf, gg] : roles) {
      const int64_t rope = std::string(gg) == "attn_q" ? d.heads : (std::string(gg) == "attn_k" ? d.kv_heads : 0);
      p.push_back({h + hf + ".weight", g + gg + ".weight", rope});
      if (fq.has(h + hf + ".bias")) p.push_back({h + hf + ".bias", g + gg + ".bias", rope});
    }
  }
  p.push_back({"model.norm.weight", "output_norm.weight", 0});
  if (fq.has("lm_head.weight")) p.push_back({"lm_head.weight", "output.weight", 0});
  return p;
}

// GGUF row g of a q/k tensor holds HF row rope_row(g) (convert_hf_to_gguf.py
// LlamaModel.permute: reshape(heads, 2, hd/2, ...).swapaxes(1, 2)); the
// reader (gguf_llama.cpp) undoes exactly this.
int64_t rope_row(int64_t g, int64_t rows, int64_t heads) {
  if (heads == 0) return g;
  const int64_t hd = rows / heads, half = hd / 2;
  const int64_t h = g / hd, i = (g % hd) / 2, j = (g % hd) % 2;
  return h * hd + j * half + i;
}

// ---- tokenizer.json -> tokenizer.ggml.* (byte-level BPE) ----

struct Tokenizer {
  std::string model, pre;
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;
};

// The tokenizer.ggml.pre whose HF pre-tokenizer (as gguf_tokenizer.cpp maps
// it) equals this tokenizer.json's; "" when none does.
std::string find_pre(const json& tj) {
  for (const char* cand : {"smollm", "gpt2", "llama-bpe", "qwen2"}) {
    GgufTokenizer probe;
    probe.model = "gpt2";
    probe.pre = cand;
    probe.tokens = {"a", "b", "ab"};
    probe.merges = {"a b"};
    const json hf = json::parse(gguf_tokenizer_to_hf_json(probe, "probe"));
    if (hf["pre_tokenizer"] == tj.value("pre_tokenizer", json()) && hf["normalizer"] == tj.value("normalizer", json()))
      return cand;
  }
  return "";
}

// Converts; returns a note ("" when converted) saying why not.
std::string read_tokenizer(const std::string& dir, int64_t vocab, Tokenizer* t) {
  std::error_code ec;
  const std::string path = dir + "/tokenizer.json";
  if (!fs::is_regular_file(path, ec)) return "no tokenizer.json in the quantize output";
  const json tj = json::parse(read_file(path), nullptr, false);
  if (tj.is_discarded() || !tj.is_object() || !tj.contains("model")) return path + " is not a tokenizer";
  const json& m = tj["model"];
  if (m.value("type", std::string()) != "BPE") return "tokenizer model '" + m.value("type", std::string()) + "' (BPE only)";
  const bool byte_level = tj.contains("decoder") && tj["decoder"].is_object() &&
                          tj["decoder"].value("type", std::string()) == "ByteLevel";
  if (!byte_level) return "not a byte-level BPE tokenizer (SentencePiece-style tokenizers are not converted)";
  std::map<int64_t, std::string> by_id;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) by_id[it.value().get<int64_t>()] = it.key();
  std::map<int64_t, bool> added;  // id -> special
  if (tj.contains("added_tokens"))
    for (const auto& a : tj["added_tokens"]) {
      by_id[a.at("id").get<int64_t>()] = a.at("content").get<std::string>();
      added[a.at("id").get<int64_t>()] = a.value("special", false);
    }
  if (!by_id.empty() && by_id.rbegin()->first >= vocab)
    return "tokenizer.json has token id " + std::to_string(by_id.rbegin()->first) + " beyond vocab_size " +
           std::to_string(vocab) + " (llama.cpp needs one embedding row per token)";
  const int64_t n = vocab;
  for (int64_t id = 0; id < n; ++id) {
    const auto it = by_id.find(id);
    if (it == by_id.end()) {
      t->tokens.push_back("[PAD" + std::to_string(id) + "]");  // convert_hf_to_gguf.py's padding tokens
      t->types.push_back(5);                                     // unused
      continue;
    }
    t->tokens.push_back(it->second);
    const auto a = added.find(id);
    t->types.push_back(a == added.end() ? 1 : (a->second ? 3 : 4));  // normal, control, user-defined
  }
  for (const auto& mg : m.value("merges", json::array())) {
    if (mg.is_string()) t->merges.push_back(mg.get<std::string>());
    else if (mg.is_array() && mg.size() == 2) t->merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
  }
  t->model = "gpt2";
  t->pre = find_pre(tj);
  return "";
}

}  // namespace

json GgufExportReport::to_json() const {
  json j{{"format", "gguf"}, {"gguf_type", to_string(type)}, {"quant_dir", quant_dir}, {"out_file", out_file},
         {"packed", packed}, {"tokenizer", tokenizer}};
  j["dense"] = json::array();
  for (const auto& d : dense) j["dense"].push_back({{"module", d.module}, {"reason", d.reason}});
  return j;
}

GgufExportReport export_gguf(const std::string& quant_dir, const std::string& out_file, const GgufExportOptions& opts,
                             std::ostream* log) {
  std::error_code ec;
  if (fs::exists(out_file, ec) && !opts.overwrite)
    throw InputError("--out " + out_file + " exists (pass --overwrite to replace it)");
  if (fs::is_directory(out_file, ec)) throw InputError("--out " + out_file + " is a directory; name the .gguf file");
  const QuantOutput qo(quant_dir);
  const QuantConfig& q = qo.quant();
  const std::string conflict = gguf_grid_conflict(opts.type, q);
  if (!conflict.empty() || (opts.type == GgufQuantType::Q4_1) != q.free_min)
    throw InputError(quant_dir + " was quantized as '" + q.describe() + "' (" +
                     (conflict.empty() ? std::string(q.free_min ? "free-min grid" : "integer zero points") : conflict) +
                     "): --gguf-type " + to_string(opts.type) + " holds " +
                     (opts.type == GgufQuantType::Q8_0 ? "8-bit symmetric"
                                                       : opts.type == GgufQuantType::Q4_0 ? "4-bit symmetric"
                                                                                          : "4-bit free-min") +
                     " g32 grids; re-quantize with --format gguf --gguf-type " + to_string(opts.type));
  const json& cfg = qo.config();
  const std::string where = quant_dir + "/config.json";
  const Dims d = read_dims(cfg, where);
  const SafetensorsModel& fq = qo.model();
  const std::vector<Planned> plan = plan_tensors(d, fq);
  std::set<std::string> planned_names;
  for (const auto& p : plan) {
    if (!fq.has(p.hf)) throw InputError(quant_dir + ": tensor " + p.hf + " is missing (not a llama checkpoint)");
    planned_names.insert(p.hf);
  }
  for (const auto& n : fq.tensor_names())
    if (!planned_names.count(n)) throw InputError(quant_dir + ": tensor " + n + " has no llama GGUF equivalent");
  std::map<std::string, const QuantLinearInfo*> quantized;  // "<prefix>.weight"
  for (const auto& l : qo.linears()) quantized[l.prefix + ".weight"] = &l;

  GgufExportReport rep;
  rep.quant_dir = quant_dir;
  rep.out_file = out_file;
  rep.type = opts.type;
  Tokenizer tok;
  const std::string tok_note = read_tokenizer(quant_dir, d.vocab, &tok);
  rep.tokenizer = tok_note.empty() ? "gpt2 (pre " + (tok.pre.empty() ? std::string("missing: llama.cpp uses its default") : tok.pre) + ")"
                                   : "none: " + tok_note;

  GgufWriter w(out_file);
  w.kv_str("general.architecture", "llama");
  // Not the directory name: quantize writes from a staging directory, export
  // from the final one, and both must give the same bytes.
  w.kv_str("general.name", cfg.value("_name_or_path", std::string("llama")));
  w.kv_u32("general.file_type", file_type(opts.type));
  w.kv_u32("general.quantization_version", 2);  // GGML_QNT_VERSION
  w.kv_str("general.quantized_by", std::string("streamq ") + STREAMQ_VERSION + ": " + q.describe());
  // Every effective setting (preset, LoaQ, calibration), as the quantize output recorded it.
  if (!qo.settings().is_null()) w.kv_str("streamq.settings", qo.settings().dump());
  w.kv_u32("llama.context_length", static_cast<uint32_t>(cfg.value("max_position_embeddings", 2048)));
  w.kv_u32("llama.embedding_length", static_cast<uint32_t>(d.hidden));
  w.kv_u32("llama.block_count", static_cast<uint32_t>(d.layers));
  w.kv_u32("llama.feed_forward_length", static_cast<uint32_t>(d.inter));
  w.kv_u32("llama.rope.dimension_count", static_cast<uint32_t>(d.head_dim));
  w.kv_u32("llama.attention.head_count", static_cast<uint32_t>(d.heads));
  w.kv_u32("llama.attention.head_count_kv", static_cast<uint32_t>(d.kv_heads));
  if (d.head_dim != d.hidden / d.heads) {
    w.kv_u32("llama.attention.key_length", static_cast<uint32_t>(d.head_dim));
    w.kv_u32("llama.attention.value_length", static_cast<uint32_t>(d.head_dim));
  }
  w.kv_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(cfg.value("rms_norm_eps", 1e-6)));
  w.kv_f32("llama.rope.freq_base", static_cast<float>(cfg.value("rope_theta", 10000.0)));
  if (cfg.contains("rope_scaling") && cfg["rope_scaling"].is_object()) {
    const json& rs = cfg["rope_scaling"];
    const std::string type = rs.value("rope_type", rs.value("type", std::string()));
    if (type != "linear")
      throw InputError(where + ": rope_scaling type '" + type + "' is not written (linear only)");
    w.kv_str("llama.rope.scaling.type", "linear");
    w.kv_f32("llama.rope.scaling.factor", static_cast<float>(rs.value("factor", 1.0)));
  }
  w.kv_u32("llama.vocab_size", static_cast<uint32_t>(d.vocab));
  if (tok_note.empty()) {
    w.kv_str("tokenizer.ggml.model", tok.model);
    if (!tok.pre.empty()) w.kv_str("tokenizer.ggml.pre", tok.pre);
    w.kv_str_array("tokenizer.ggml.tokens", tok.tokens);
    w.kv_i32_array("tokenizer.ggml.token_type", tok.types);
    w.kv_str_array("tokenizer.ggml.merges", tok.merges);
    const auto id = [&](const char* cfg_key, const char* gguf_key) {
      if (!cfg.contains(cfg_key)) return;
      const json& v = cfg[cfg_key].is_array() && !cfg[cfg_key].empty() ? cfg[cfg_key][0] : cfg[cfg_key];
      if (v.is_number_integer()) w.kv_u32(gguf_key, v.get<uint32_t>());
    };
    id("bos_token_id", "tokenizer.ggml.bos_token_id");
    id("eos_token_id", "tokenizer.ggml.eos_token_id");
    id("pad_token_id", "tokenizer.ggml.padding_token_id");
    const std::string tc_path = quant_dir + "/tokenizer_config.json";
    if (fs::is_regular_file(tc_path, ec)) {
      const json tc = json::parse(read_file(tc_path), nullptr, false);
      if (tc.is_object()) {
        if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean())
          w.kv_bool("tokenizer.ggml.add_bos_token", tc["add_bos_token"].get<bool>());
        if (tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean())
          w.kv_bool("tokenizer.ggml.add_eos_token", tc["add_eos_token"].get<bool>());
        if (tc.contains("chat_template") && tc["chat_template"].is_string())
          w.kv_str("tokenizer.chat_template", tc["chat_template"].get<std::string>());
      }
    }
  }

  // Tensor plan: quantized linears whose rows split into whole blocks in the
  // block type, everything else in its float dtype.
  const uint32_t qtype = ggml_type_of(opts.type);
  std::vector<bool> is_packed(plan.size());
  for (size_t k = 0; k < plan.size(); ++k) {
    const Planned& p = plan[k];
    const TensorInfo& t = fq.info(p.hf);
    const std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
    const auto it = quantized.find(p.hf);
    if (it != quantized.end()) {
      if (it->second->in % kGgmlBlock == 0) {
        is_packed[k] = true;
        rep.packed.push_back(it->second->prefix);
        w.add_tensor(p.gguf, ne, qtype);
        continue;
      }
      rep.dense.push_back({it->second->prefix, "in_features " + std::to_string(it->second->in) +
                                                   " is not a multiple of the 32-wide GGUF block"});
    }
    w.add_tensor(p.gguf, ne, ggml_float_type(t.dtype, quant_dir + ": " + p.hf));
  }
  for (size_t k = 0; k < plan.size(); ++k) {
    const Planned& p = plan[k];
    const TensorInfo& t = fq.info(p.hf);
    const int64_t rows = t.shape[0];
    if (!is_packed[k]) {
      const auto* bytes = static_cast<const uint8_t*>(fq.file_of(p.hf).data(t));
      const uint64_t row_bytes = t.nbytes / static_cast<uint64_t>(rows);
      if (p.rope_heads == 0) {
        w.write_tensor_data(p.gguf, bytes, t.nbytes);
      } else {
        for (int64_t g = 0; g < rows; ++g)
          w.write_tensor_data(p.gguf, bytes + rope_row(g, rows, p.rope_heads) * row_bytes, row_bytes);
      }
      continue;
    }
    const QuantLinearInfo& l = *quantized.at(p.hf);
    const QuantLinearData qd = qo.read(l, std::string("GGUF ") + to_string(opts.type));
    if (!qd.trivial_g_idx)
      throw InputError(qo.quant_file().path() + ": " + l.prefix +
                       ".g_idx is not i / 32: GGUF blocks are 32 consecutive inputs; quantize --act-order needs "
                       "--static-groups for GGUF");
    const int64_t blocks = l.in / kGgmlBlock;
    const uint64_t bb = ggml_type_traits(qtype)->bytes;
    std::vector<uint8_t> row(static_cast<size_t>(blocks * bb));
    for (int64_t g = 0; g < l.out; ++g) {
      const int64_t r = rope_row(g, l.out, p.rope_heads);
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* c = &qd.codes[static_cast<size_t>(r * l.in + b * kGgmlBlock)];
        const size_t k2 = static_cast<size_t>(b * l.out + r);
        const uint16_t dd = f32_to_f16(qd.scales[k2]);
        uint8_t* o = &row[static_cast<size_t>(b * bb)];
        if (opts.type == GgufQuantType::Q4_0) ggml_encode_q4_0(c, dd, o);
        else if (opts.type == GgufQuantType::Q8_0) ggml_encode_q8_0(c, dd, o);
        else ggml_encode_q4_1(c, dd, f32_to_f16(qd.zeros[k2]), o);
      }
      w.write_tensor_data(p.gguf, row.data(), row.size());
    }
  }
  w.finish();
  if (log) {
    *log << "streamq export: " << rep.packed.size() << " linears in " << to_string(opts.type) << ", "
         << rep.dense.size() << " written dense; tokenizer " << rep.tokenizer << "\n";
    for (const auto& x : rep.dense) *log << "  dense: " << x.module << ": " << x.reason << "\n";
  }
  return rep;
}

}  // namespace streamq
