// Parsing and validation of HF config.json for the supported decoder families,
// and the RoPE cos/sin tables (with llama3 frequency scaling) they imply.
#include "src/model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "io/file/file_util.h"

namespace streamq {

using nlohmann::json;

namespace {

constexpr const char* kSupported =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM";

// Field access with the file and field named in every failure.
class Fields {
 public:
  Fields(const json& j, std::string source) : j_(j), src_(std::move(source)) {}

  const std::string& source() const { return src_; }
  // Absent and null both mean "not given": HF writes null for e.g. head_dim.
  bool given(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t positive_int(const char* key) const {
    if (!given(key)) throw InputError(src_ + ": missing field '" + key + "'");
    const json& v = j_.at(key);
    if (!v.is_number_integer()) throw InputError(src_ + ": field '" + key + "' is " + v.dump() + ", expected an integer");
    const int64_t x = v.get<int64_t>();
    if (x <= 0) throw InputError(src_ + ": field '" + key + "' is " + std::to_string(x) + ", expected > 0");
    return x;
  }
  int64_t positive_int(const char* key, int64_t fallback) const { return given(key) ? positive_int(key) : fallback; }

  double positive_number(const char* key, double fallback) const {
    if (!given(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) throw InputError(src_ + ": field '" + key + "' is " + v.dump() + ", expected a number");
    const double x = v.get<double>();
    if (!(x > 0) || !std::isfinite(x))
      throw InputError(src_ + ": field '" + key + "' is " + v.dump() + ", expected a positive number");
    return x;
  }

  bool boolean(const char* key, bool fallback) const {
    if (!given(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) throw InputError(src_ + ": field '" + key + "' is " + v.dump() + ", expected true or false");
    return v.get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    if (!given(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) throw InputError(src_ + ": field '" + key + "' is " + v.dump() + ", expected a string");
    return v.get<std::string>();
  }

  const json& raw(const char* key) const { return j_.at(key); }

 private:
  const json& j_;
  std::string src_;
};

std::string architecture_name(const Fields& f) {
  if (f.given("architectures")) {
    const json& a = f.raw("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string())
      throw InputError(f.source() + ": field 'architectures' is " + a.dump() + ", expected a list of names");
    return a[0].get<std::string>();
  }
  const std::string mt = f.string("model_type", "");
  if (mt.empty()) throw InputError(f.source() + ": missing field 'architectures' (and no 'model_type')");
  if (mt == "llama") return "LlamaForCausalLM";
  if (mt == "mistral") return "MistralForCausalLM";
  if (mt == "qwen2") return "Qwen2ForCausalLM";
  if (mt == "qwen3") return "Qwen3ForCausalLM";
  return "model_type=" + mt;
}

RopeScaling parse_rope_scaling(const Fields& f) {
  RopeScaling rs;
  if (!f.given("rope_scaling")) return rs;
  const json& j = f.raw("rope_scaling");
  const std::string where = f.source() + ": rope_scaling";
  if (!j.is_object()) throw InputError(where + " is " + j.dump() + ", expected null or an object");
  const Fields r(j, where);
  const std::string type = r.given("rope_type") ? r.string("rope_type", "") : r.string("type", "");
  if (type == "default") return rs;  // HF's spelling of "no scaling"
  if (type != "llama3")
    throw InputError(where + ": unsupported rope_scaling type '" + type + "' (supported: llama3, or null)");
  rs.type = type;
  if (!r.given("factor")) throw InputError(where + ": missing field 'factor'");
  rs.factor = r.positive_number("factor", rs.factor);
  rs.low_freq_factor = r.positive_number("low_freq_factor", rs.low_freq_factor);
  rs.high_freq_factor = r.positive_number("high_freq_factor", rs.high_freq_factor);
  rs.original_max_position_embeddings =
      r.positive_int("original_max_position_embeddings", rs.original_max_position_embeddings);
  if (!(rs.high_freq_factor > rs.low_freq_factor))
    throw InputError(where + ": high_freq_factor must exceed low_freq_factor (the smoothing divides by their gap)");
  return rs;
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source_name) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw InputError(source_name + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw InputError(source_name + ": expected a JSON object");
  const Fields f(j, source_name);

  ModelConfig c;
  c.arch_name = architecture_name(f);
  if (c.arch_name == "LlamaForCausalLM") c.arch = Architecture::Llama;
  else if (c.arch_name == "MistralForCausalLM") c.arch = Architecture::Mistral;
  else if (c.arch_name == "Qwen2ForCausalLM") c.arch = Architecture::Qwen2;
  else if (c.arch_name == "Qwen3ForCausalLM") c.arch = Architecture::Qwen3;
  else
    throw InputError(source_name + ": architecture '" + c.arch_name + "' is not supported; supported: " + kSupported);

  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") throw InputError(source_name + ": field 'hidden_act' is '" + act + "', only 'silu' is supported");

  c.hidden = f.positive_int("hidden_size");
  c.intermediate = f.positive_int("intermediate_size");
  c.layers = f.positive_int("num_hidden_layers");
  c.heads = f.positive_int("num_attention_heads");
  c.kv_heads = f.positive_int("num_key_value_heads", c.heads);
  c.vocab = f.positive_int("vocab_size");
  c.max_pos = f.positive_int("max_position_embeddings", 2048);
  c.rms_eps = f.positive_number("rms_norm_eps", 1e-6);  // HF's default for all four families
  c.rope_theta = f.positive_number("rope_theta", 10000.0);
  c.rope_scaling = parse_rope_scaling(f);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);

  if (c.heads % c.kv_heads != 0)
    throw InputError(source_name + ": num_attention_heads " + std::to_string(c.heads) +
                     " is not a multiple of num_key_value_heads " + std::to_string(c.kv_heads));
  if (f.given("head_dim")) {
    c.head_dim = f.positive_int("head_dim");  // Qwen3 and some Mistrals: not hidden / heads
  } else {
    if (c.hidden % c.heads != 0)
      throw InputError(source_name + ": hidden_size " + std::to_string(c.hidden) + " is not divisible by " +
                       "num_attention_heads " + std::to_string(c.heads) + " and no head_dim is given");
    c.head_dim = c.hidden / c.heads;
  }
  if (c.head_dim % 2 != 0)
    throw InputError(source_name + ": head_dim " + std::to_string(c.head_dim) + " is odd; RoPE needs pairs");

  // Which projections carry biases follows each family's HF modeling code,
  // not just the config flags (Qwen2's q/k/v bias is hard-wired, for instance).
  switch (c.arch) {
    case Architecture::Llama:
      c.attention_bias = c.o_bias = f.boolean("attention_bias", false);
      c.mlp_bias = f.boolean("mlp_bias", false);
      break;
    case Architecture::Mistral:
      break;  // HF's Mistral builds every linear with bias=False whatever the config says
    case Architecture::Qwen2:
      c.attention_bias = true;
      c.o_bias = false;
      break;
    case Architecture::Qwen3:
      c.attention_bias = c.o_bias = f.boolean("attention_bias", false);
      c.qk_norm = true;
      break;
  }

  // Sliding-window attention only changes results for sequences longer than
  // the window; calibration and eval windows here are shorter than any real
  // model's window, so it is recorded for callers to check, never applied.
  // Qwen2 ignores its sliding_window unless use_sliding_window is set.
  const bool uses_window = c.arch == Architecture::Mistral ||
                           (c.arch == Architecture::Qwen2 && f.boolean("use_sliding_window", false));
  if (uses_window && f.given("sliding_window")) c.sliding_window = f.positive_int("sliding_window");
  if (j.contains("streamq_rotation")) {
    const json& r = j["streamq_rotation"];
    if (!r.is_object() || !r.contains("rotate") || !r["rotate"].is_string() ||
        (r.contains("online_hadamard") && !r["online_hadamard"].is_boolean()))
      throw InputError(source_name + ": field 'streamq_rotation' is not {\"rotate\": string, \"online_hadamard\": bool}");
    c.rotation = r["rotate"].get<std::string>();
    if (c.rotation != "none" && c.rotation != "hadamard" && c.rotation != "random")
      throw InputError(source_name + ": streamq_rotation.rotate '" + c.rotation + "' is not none, hadamard or random");
    c.online_hadamard = r.value("online_hadamard", false);
    if (r.contains("head_hadamard") && !r["head_hadamard"].is_boolean())
      throw InputError(source_name + ": streamq_rotation.head_hadamard is not a boolean");
    c.head_hadamard = r.value("head_hadamard", false);
    if (r.contains("online_hadamard_o_proj") && !r["online_hadamard_o_proj"].is_boolean())
      throw InputError(source_name + ": streamq_rotation.online_hadamard_o_proj is not a boolean");
    c.online_hadamard_o_proj = r.value("online_hadamard_o_proj", false);
  }
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  return parse_model_config(read_file(path), path);
}

void build_rope_tables(const ModelConfig& cfg, int64_t max_pos, std::vector<float>* cos,
                       std::vector<float>* sin) {
  if (cfg.head_dim <= 0 || cfg.head_dim % 2 != 0 || max_pos < 0)
    throw InternalError("build_rope_tables: head_dim " + std::to_string(cfg.head_dim) + ", max_pos " +
                        std::to_string(max_pos));
  const int64_t half = cfg.head_dim / 2;
  std::vector<double> inv_freq(static_cast<std::size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(cfg.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(cfg.head_dim));

  if (cfg.rope_scaling.type == "llama3") {
    // HF's _compute_llama3_parameters: long wavelengths are slowed by `factor`,
    // short ones kept, and the band between blended linearly in ctx / wavelen.
    const RopeScaling& rs = cfg.rope_scaling;
    const double old_ctx = static_cast<double>(rs.original_max_position_embeddings);
    const double low_freq_wavelen = old_ctx / rs.low_freq_factor;
    const double high_freq_wavelen = old_ctx / rs.high_freq_factor;
    for (double& f : inv_freq) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_freq_wavelen) {
        f = f / rs.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
  }

  // Angles in double, stored as float. HF rounds inv_freq and pos * inv_freq
  // to float32, so its angles carry ~6e-8 relative error: up to ~2.4e-4 rad at
  // position 4096, which shows directly in cos/sin. These tables are the exact
  // ones; expect that much disagreement with HF at long positions, not less.
  cos->assign(static_cast<std::size_t>(max_pos * half), 0.0f);
  sin->assign(static_cast<std::size_t>(max_pos * half), 0.0f);
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * inv_freq[i];
      (*cos)[p * half + i] = static_cast<float>(std::cos(angle));
      (*sin)[p * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

}  // namespace streamq
