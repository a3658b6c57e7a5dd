// `streamq synth`: writes a random-weight HF checkpoint of any Llama/Qwen2
// shape (or a preset's), streaming tensor by tensor, for benchmarks and tests.
#include <cstdio>
#include <iostream>

#include "tools/cli_common.h"
#include "src/core/error.h"
#include "src/pipeline/synth.h"

namespace streamq::cli {

namespace {

DType parse_weight_dtype(const std::string& s) {
  if (s == "bf16") return DType::BF16;
  if (s == "f16") return DType::F16;
  if (s == "f32") return DType::F32;
  throw InputError("--dtype '" + s + "' is unknown; use bf16, f16 or f32");
}

}  // namespace

int run_synth(const std::vector<std::string>& args) {
  std::string out_dir, preset, dtype;
  uint64_t seed = 0, shard_mb = 4096;
  int threads = 0;
  bool overwrite = false, tie = false, quiet = false;
  po::options_description opts("synth flags");
  opts.add_options()
      ("help,h", "show this help")
      ("out", po::value(&out_dir), "output model directory (appears only when complete)")
      ("preset", po::value(&preset), "start from a published shape: llama3-8b, llama3-70b, qwen2.5-7b "
                                     "(qwen2.5-7b is Qwen2ForCausalLM with q/k/v biases); flags given override it")
      ("hidden", po::value<int64_t>(), "hidden size")
      ("intermediate", po::value<int64_t>(), "MLP intermediate size")
      ("layers", po::value<int64_t>(), "decoder blocks")
      ("heads", po::value<int64_t>(), "attention heads")
      ("kv-heads", po::value<int64_t>(), "key/value heads (GQA); must divide --heads")
      ("vocab", po::value<int64_t>(), "vocabulary size")
      ("head-dim", po::value<int64_t>(), "per-head width; default hidden / heads")
      ("max-position", po::value<int64_t>(), "max_position_embeddings (default 4096, or the preset's)")
      ("dtype", po::value(&dtype)->default_value("bf16"), "weight dtype: bf16, f16 or f32")
      ("seed", po::value(&seed)->default_value(0), "weights depend only on the seed and the shapes")
      ("tie-embeddings", po::bool_switch(&tie), "no lm_head.weight; the head reuses the embedding")
      ("max-shard-mb", po::value(&shard_mb)->default_value(4096), "largest safetensors shard, MiB")
      ("threads", po::value(&threads)->default_value(0), "generator threads; 0 = all cores (output is the same)")
      ("overwrite", po::bool_switch(&overwrite), "replace a non-empty --out")
      ("quiet", po::bool_switch(&quiet), "no progress lines on stderr");
  po::variables_map vm;
  if (!parse("synth", "--out DIR (--preset NAME | --hidden H --intermediate I --layers L --heads NH "
                      "--kv-heads NKV --vocab V) [flags]",
             opts, args, &vm))
    return 0;
  require(vm, {"out"});
  if (!vm.count("preset")) require(vm, {"hidden", "intermediate", "layers", "heads", "kv-heads", "vocab"});

  SynthSpec spec = vm.count("preset") ? synth_preset(preset) : SynthSpec{};
  auto take = [&](const char* flag, int64_t* field) {
    if (vm.count(flag)) *field = vm[flag].as<int64_t>();
  };
  take("hidden", &spec.hidden);
  take("intermediate", &spec.intermediate);
  take("layers", &spec.layers);
  take("heads", &spec.heads);
  take("kv-heads", &spec.kv_heads);
  take("vocab", &spec.vocab);
  take("head-dim", &spec.head_dim);
  take("max-position", &spec.max_position);
  spec.dtype = parse_weight_dtype(dtype);
  spec.seed = seed;
  spec.tie_word_embeddings = tie;
  spec.max_shard_bytes = shard_mb << 20;

  const auto limit = set_threads(threads);
  const SynthResult r = write_synth_model(spec, out_dir, overwrite, quiet ? nullptr : &std::cerr);
  std::printf("model %s\ntensors %lld\nbytes %llu\nfiles %zu\nseconds %.2f\n", out_dir.c_str(),
              static_cast<long long>(r.tensors), static_cast<unsigned long long>(r.bytes), r.files.size(), r.seconds);
  return 0;
}

}  // namespace streamq::cli
