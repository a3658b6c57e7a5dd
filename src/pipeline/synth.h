// Synthetic checkpoints for benchmarks and tests: a valid HF Llama-layout
// model directory (Llama or Qwen2) of any size with deterministic random
// weights, written tensor by tensor so a 70B preset needs only its largest
// tensor in memory.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/core/dtype.h"
#include "io/formats/safetensors.h"

namespace streamq {

struct SynthSpec {
  std::string architecture = "LlamaForCausalLM";  // or "Qwen2ForCausalLM" (q/k/v biases)
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0;
  int64_t head_dim = 0;  // 0: hidden / heads
  int64_t max_position = 4096;
  double rope_theta = 500000.0;
  double rms_eps = 1e-5;
  bool tie_word_embeddings = false;
  DType dtype = DType::BF16;
  uint64_t seed = 0;
  uint64_t max_shard_bytes = 4ull << 30;
};

// The published shapes and RoPE/norm constants of llama3-8b, llama3-70b and
// qwen2.5-7b (max_position stays the model's own). Throws InputError listing
// the presets for any other name.
SynthSpec synth_preset(const std::string& name);
const std::vector<std::string>& synth_preset_names();

// config.json for the spec; throws InputError when the spec is not a model
// streamq (and HF) can load: it is checked by parsing it back.
nlohmann::json synth_config_json(const SynthSpec& spec);
// Every tensor of the checkpoint, in writing order (embedding, blocks, norm, head).
std::vector<TensorSpec> synth_tensor_plan(const SynthSpec& spec);

// How a tensor is initialised; scaled so activations stay O(1) through many
// layers: embeddings ~N(0,1); q/k/v/gate/up ~N(0, 1/in); o/down ~N(0, 1/in)
// times 1/sqrt(2*layers) (each block adds two residual terms); norms 1;
// biases ~N(0, 0.1^2); lm_head ~N(0, 1/hidden).
struct SynthInit {
  float stddev = 0;
  float constant = 0;  // used when stddev == 0
};
SynthInit synth_init(const SynthSpec& spec, const std::string& tensor_name);

// Fills n elements of `tensor_name` in `dtype`: element i depends only on
// (seed, name, i) through a counter-based generator, so the values are the
// same whatever the thread count or the order tensors are generated in.
void synth_fill(uint64_t seed, const std::string& tensor_name, const SynthInit& init, DType dtype, void* out,
                int64_t n);

struct SynthResult {
  int64_t tensors = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  std::vector<std::string> files;  // weight files written (relative to the output dir)
};

// Writes config.json and model.safetensors (sharded with an index above
// spec.max_shard_bytes) into `out_dir`, which appears only when complete; an
// existing non-empty `out_dir` is refused unless `overwrite`. One progress line
// per block on `log` (null: quiet).
SynthResult write_synth_model(const SynthSpec& spec, const std::string& out_dir, bool overwrite, std::ostream* log);

}  // namespace streamq
