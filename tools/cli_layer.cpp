// `streamq layer`: quantize one linear from tensors on disk (for researchers).
#include <cstdio>
#include <iostream>

#include "tools/cli_common.h"
#include "tools/cli_device.h"
#include "tools/cli_method_flags.h"
#include "kernels/backend.h"
#include "src/pipeline/layer_job.h"

namespace streamq::cli {

int run_layer(const std::vector<std::string>& args) {
  LayerJob job;
  MethodFlags mf;
  int threads = 0;
  po::options_description opts("layer flags");
  opts.add_options()
      ("help,h", "show this help")
      ("weight", po::value(&job.weight_path), "W as (out, in): .npy (float32/float64) or single-tensor .safetensors")
      ("x", po::value(&job.x_path), "X as (in, tokens): the layer's input in the quantized model")
      ("xfp", po::value(&job.xfp_path), "X~ as (in, tokens): the input in the FP model (default: X)")
      ("out", po::value(&job.out_dir), "output directory: q.npy (dequantized (out, in), float64), codes.npy "
       "(uint8), scales.npy and zeros.npy ((groups, out), float64), g_idx.npy ((in,), int32)")
      ("chunk-tokens", po::value(&job.chunk_tokens)->default_value(4096), "tokens per statistics chunk")
      ("threads", po::value(&threads)->default_value(0), "worker threads; 0 = all cores");
  add_method_flags(opts, mf);
  DeviceFlags df;
  add_device_flags(opts, &df, true);
  po::variables_map vm;
  if (!parse("layer", "--weight W --x X [--xfp X~] --out DIR [method flags]", opts, args, &vm)) return 0;
  require(vm, {"weight", "x", "out"});
  const std::string preset_line = finish_method_flags(mf, vm, PresetTarget::AsymmetricOk);
  if (!preset_line.empty()) std::cerr << "layer: " << preset_line << "\n";
  job.quant = mf.quant;
  job.loaq = mf.loaq;
  const auto limit = set_threads(threads);
  OpenedDevice device = open_device(df, vm);
  job.sweep_precision = device.sweep_precision;
  job.factor_precision = device.factor_precision;
  if (device.device_weights == DeviceWeights::Bf16)
    throw InputError("--device-weights bf16: streamq layer holds no block on the device (its W is the sweep's "
                     "input, kept float32); the flag applies to quantize and eval");
  const LayerResult r = run_layer(job, device.backend());
  std::printf("shape %lld %lld\ntokens %lld\nobjective_fp %.10e\nobjective_q %.10e\nfactor %s\n", (long long)r.rows,
              (long long)r.cols, (long long)r.tokens, r.objective_fp, r.objective_q, r.factor.c_str());
  return 0;
}

}  // namespace streamq::cli
