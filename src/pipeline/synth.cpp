// Synthetic checkpoints: presets, config.json, the tensor plan, a counter-based
// random fill, and the streaming writer loop (one tensor buffer, reused).
#include "src/pipeline/synth.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <ostream>

#include "src/core/error.h"
#include "src/core/sysinfo.h"
#include "io/file/file_util.h"
#include "src/model/config.h"
#include "src/job/output_dir.h"
#include "src/report/progress.h"

namespace streamq {

using nlohmann::json;

namespace {

constexpr const char* kLlama = "LlamaForCausalLM";
constexpr const char* kQwen2 = "Qwen2ForCausalLM";
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

uint64_t splitmix64(uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Approximately N(0,1): the sum of four 16-bit uniforms (Irwin-Hall), centred
// and scaled to unit variance. Integer draws and exact float arithmetic keep
// it bit-identical on every machine (no libm), and its tails stop at +-3.46,
// which random weights do not miss.
float normal_at(uint64_t key, uint64_t i) {
  const uint64_t r = splitmix64(key + i * kGolden);
  const uint32_t s = static_cast<uint32_t>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
  return ((static_cast<float>(s) + 2.0f) / 65536.0f - 2.0f) * 1.7320508f;
}

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::F32: return "float32";
    default:
      throw InputError(std::string("synth: --dtype ") + dtype_name(t) + " is not a weight dtype (bf16, f16, f32)");
  }
}

int64_t resolved_head_dim(const SynthSpec& s) {
  return s.head_dim > 0 ? s.head_dim : s.hidden / std::max<int64_t>(1, s.heads);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The block a tensor belongs to, or -1 for embedding, final norm and head.
int64_t block_of(const std::string& name) {
  const std::string p = "model.layers.";
  if (name.rfind(p, 0) != 0) return -1;
  return std::stoll(name.substr(p.size()));
}

}  // namespace

const std::vector<std::string>& synth_preset_names() {
  static const std::vector<std::string> names = {"llama3-8b", "llama3-70b", "qwen2.5-7b"};
  return names;
}

SynthSpec synth_preset(const std::string& name) {
  SynthSpec s;
  // Values from each model's published config.json.
  if (name == "llama3-8b") {
    s.hidden = 4096, s.intermediate = 14336, s.layers = 32, s.heads = 32, s.kv_heads = 8, s.vocab = 128256;
    s.max_position = 8192, s.rope_theta = 500000.0, s.rms_eps = 1e-5;
  } else if (name == "llama3-70b") {
    s.hidden = 8192, s.intermediate = 28672, s.layers = 80, s.heads = 64, s.kv_heads = 8, s.vocab = 128256;
    s.max_position = 8192, s.rope_theta = 500000.0, s.rms_eps = 1e-5;
  } else if (name == "qwen2.5-7b") {
    s.architecture = kQwen2;
    s.hidden = 3584, s.intermediate = 18944, s.layers = 28, s.heads = 28, s.kv_heads = 4, s.vocab = 152064;
    s.max_position = 32768, s.rope_theta = 1000000.0, s.rms_eps = 1e-6;
  } else {
    std::string known;
    for (const auto& n : synth_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw InputError("--preset '" + name + "' is unknown; presets: " + known);
  }
  return s;
}

json synth_config_json(const SynthSpec& s) {
  const bool qwen = s.architecture == kQwen2;
  if (!qwen && s.architecture != kLlama)
    throw InputError("synth: architecture '" + s.architecture + "' is not supported (" + kLlama + ", " + kQwen2 + ")");
  const std::pair<const char*, int64_t> dims[] = {{"--hidden", s.hidden},     {"--intermediate", s.intermediate},
                                                  {"--layers", s.layers},     {"--heads", s.heads},
                                                  {"--kv-heads", s.kv_heads}, {"--vocab", s.vocab},
                                                  {"--max-position", s.max_position}};
  for (const auto& [flag, v] : dims)
    if (v <= 0) throw InputError(std::string(flag) + " must be > 0 (got " + std::to_string(v) + ")");
  if (s.head_dim < 0) throw InputError("--head-dim must be > 0, or 0 for hidden / heads");
  // HF's Qwen2 always derives head_dim from hidden / heads and ignores the field.
  if (qwen && s.head_dim > 0 && s.head_dim * s.heads != s.hidden)
    throw InputError("--head-dim " + std::to_string(s.head_dim) + ": Qwen2 requires head_dim = hidden / heads");
  if (s.max_shard_bytes == 0) throw InputError("--max-shard-mb must be > 0");

  json c = {{"architectures", {s.architecture}},
            {"model_type", qwen ? "qwen2" : "llama"},
            {"hidden_size", s.hidden},
            {"intermediate_size", s.intermediate},
            {"num_hidden_layers", s.layers},
            {"num_attention_heads", s.heads},
            {"num_key_value_heads", s.kv_heads},
            {"vocab_size", s.vocab},
            {"max_position_embeddings", s.max_position},
            {"rms_norm_eps", s.rms_eps},
            {"rope_theta", s.rope_theta},
            {"rope_scaling", nullptr},
            {"hidden_act", "silu"},
            {"tie_word_embeddings", s.tie_word_embeddings},
            {"torch_dtype", torch_dtype_name(s.dtype)},
            {"initializer_range", 0.02},
            {"attention_dropout", 0.0},
            {"use_cache", true}};
  if (qwen) {
    c["use_sliding_window"] = false;
    c["sliding_window"] = s.max_position;
    c["max_window_layers"] = s.layers;
  } else {
    if (s.head_dim > 0 || s.hidden % s.heads == 0) c["head_dim"] = resolved_head_dim(s);
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
    c["pretraining_tp"] = 1;
  }
  parse_model_config(c.dump(), "synth config");  // the loader's own checks (GQA ratio, even head_dim, ...)
  return c;
}

std::vector<TensorSpec> synth_tensor_plan(const SynthSpec& s) {
  const bool bias = s.architecture == kQwen2;
  const int64_t d = resolved_head_dim(s), q_out = s.heads * d, kv_out = s.kv_heads * d;
  std::vector<TensorSpec> plan;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    plan.push_back({std::move(name), s.dtype, std::move(shape)});
  };
  add("model.embed_tokens.weight", {s.vocab, s.hidden});
  for (int64_t b = 0; b < s.layers; ++b) {
    const std::string p = "model.layers." + std::to_string(b) + ".";
    add(p + "input_layernorm.weight", {s.hidden});
    const std::pair<const char*, int64_t> qkv[] = {{"q_proj", q_out}, {"k_proj", kv_out}, {"v_proj", kv_out}};
    for (const auto& [proj, out] : qkv) {
      add(p + "self_attn." + proj + ".weight", {out, s.hidden});
      if (bias) add(p + "self_attn." + proj + ".bias", {out});
    }
    add(p + "self_attn.o_proj.weight", {s.hidden, q_out});
    add(p + "post_attention_layernorm.weight", {s.hidden});
    add(p + "mlp.gate_proj.weight", {s.intermediate, s.hidden});
    add(p + "mlp.up_proj.weight", {s.intermediate, s.hidden});
    add(p + "mlp.down_proj.weight", {s.hidden, s.intermediate});
  }
  add("model.norm.weight", {s.hidden});
  if (!s.tie_word_embeddings) add("lm_head.weight", {s.vocab, s.hidden});
  return plan;
}

SynthInit synth_init(const SynthSpec& s, const std::string& name) {
  const double residual_gain = 1.0 / std::sqrt(2.0 * static_cast<double>(s.layers));
  auto fan_in = [](int64_t in) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(in))); };
  if (ends_with(name, "embed_tokens.weight")) return {1.0f, 0};
  if (ends_with(name, "layernorm.weight") || name == "model.norm.weight") return {0, 1.0f};
  if (ends_with(name, ".bias")) return {0.1f, 0};
  if (ends_with(name, "o_proj.weight"))
    return {static_cast<float>(fan_in(s.heads * resolved_head_dim(s)) * residual_gain), 0};
  if (ends_with(name, "down_proj.weight")) return {static_cast<float>(fan_in(s.intermediate) * residual_gain), 0};
  if (ends_with(name, "_proj.weight") || name == "lm_head.weight") return {fan_in(s.hidden), 0};
  throw InternalError("synth: no initialisation rule for tensor '" + name + "'");
}

void synth_fill(uint64_t seed, const std::string& name, const SynthInit& init, DType dtype, void* out, int64_t n) {
  const std::size_t es = dtype_size(dtype);
  const uint64_t key = splitmix64(seed ^ splitmix64(fnv1a64(name)));
  constexpr int64_t kBlock = 1 << 16;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, nblocks), [&](const tbb::blocked_range<int64_t>& r) {
    std::vector<float> tmp(kBlock);
    for (int64_t blk = r.begin(); blk < r.end(); ++blk) {
      const int64_t lo = blk * kBlock, m = std::min(kBlock, n - lo);
      for (int64_t i = 0; i < m; ++i)
        tmp[i] = init.stddev == 0 ? init.constant : init.stddev * normal_at(key, static_cast<uint64_t>(lo + i));
      convert_from_f32(dtype, tmp.data(), static_cast<unsigned char*>(out) + lo * es, static_cast<std::size_t>(m));
    }
  });
}

SynthResult write_synth_model(const SynthSpec& spec, const std::string& out_dir, bool overwrite, std::ostream* log) {
  const json config = synth_config_json(spec);
  const std::vector<TensorSpec> plan = synth_tensor_plan(spec);
  const Stopwatch clock;
  std::vector<uint64_t> nbytes;
  uint64_t largest = 0;
  for (const auto& t : plan) {
    uint64_t n = dtype_size(t.dtype);
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    nbytes.push_back(n);
    largest = std::max(largest, n);
  }

  OutputDir out(out_dir, overwrite);
  SafetensorsWriter writer(out.staging_path(), plan, {{"streamq_synth_seed", std::to_string(spec.seed)}},
                           spec.max_shard_bytes);
  // The one tensor buffer, sized for the largest tensor and reused; left
  // uninitialised because synth_fill writes every byte.
  std::unique_ptr<unsigned char[]> buf(new unsigned char[std::max<uint64_t>(largest, 1)]);
  Progress progress(log, "synth", spec.layers);
  SynthResult result;
  uint64_t block_bytes = 0;
  double block_start = clock.seconds();
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const TensorSpec& t = plan[i];
    const int64_t numel = static_cast<int64_t>(nbytes[i] / dtype_size(t.dtype));
    synth_fill(spec.seed, t.name, synth_init(spec, t.name), t.dtype, buf.get(), numel);
    writer.write(t.name, buf.get(), nbytes[i]);
    result.tensors += 1;
    result.bytes += nbytes[i];
    block_bytes += nbytes[i];
    const int64_t b = block_of(t.name);
    if (b < 0) {  // embedding, norm, head: not part of a block's rate
      block_bytes = 0;
      block_start = clock.seconds();
    } else if (i + 1 == plan.size() || block_of(plan[i + 1].name) != b) {
      const double now = clock.seconds();
      char extra[96];
      std::snprintf(extra, sizeof extra, "%.2f GB  %.2f GB/s", block_bytes / 1e9,
                    block_bytes / 1e9 / std::max(now - block_start, 1e-9));
      progress.step(extra);
      block_bytes = 0;
      block_start = now;
    }
  }
  writer.finish();
  atomic_write_file(out.staging_path() + "/config.json", config.dump(2) + "\n");
  result.files = writer.file_names();
  out.commit();
  result.seconds = clock.seconds();
  return result;
}

}  // namespace streamq
