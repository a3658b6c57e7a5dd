// `streamq eval`: windowed perplexity; the last stdout line is "ppl <value>".
#include <cstdio>
#include <iostream>

#include "tools/cli_common.h"
#include "tools/cli_device.h"
#include "tools/cli_method_flags.h"
#include "src/core/error.h"
#include "kernels/backend.h"
#include "src/pipeline/eval.h"

namespace streamq::cli {

int run_eval(const std::vector<std::string>& args) {
  EvalJob job;
  std::string tokens_dtype;
  int threads = 0;
  bool quiet = false;
  po::options_description opts("eval flags");
  opts.add_options()
      ("help,h", "show this help")
      ("model", po::value(&job.model_dir), "model: an HF directory (original, the fake-quant output of quantize, or a GPTQ checkpoint such as `streamq export` or `quantize --format gptq` writes: dequantized on load) or a GGUF file")
      ("data", po::value(&job.data_path), "evaluation token ids: little-endian, no header (see --tokens-dtype)")
      ("eval-text", po::value(&job.text_path),
       "evaluation text instead of --data: .txt or .jsonl (\"text\" fields), tokenized with the model's "
       "tokenizer.json")
      ("tokens-dtype", po::value(&tokens_dtype)->default_value("uint16"), "id width of --data: uint16 or int32")
      ("seqlen", po::value(&job.seqlen)->default_value(2048), "tokens per window; each window starts at position 0")
      ("windows", po::value(&job.windows)->default_value(0),
       "evaluate the first N non-overlapping windows; 0 = every whole window in --data")
      ("chunk-tokens", po::value(&job.chunk_tokens)->default_value(4096), "tokens per activation chunk")
      ("threads", po::value(&threads)->default_value(0), "worker threads; 0 = all cores")
      ("logits-out", po::value(&job.logits_out),
       "also write the first window's logits to this .npy file (float32, [seqlen, vocab]) "
       "for comparing against another implementation")
      ("quiet", po::bool_switch(&quiet), "no progress lines on stderr");
  add_act_quant_flags(opts, &job.act, &job.kv);
  std::string rotate;
  opts.add_options()
      ("rotate", po::value(&rotate)->default_value("none"),
       "none, hadamard or random: evaluate the model with its residual stream rotated by an orthogonal "
       "matrix fused into the weights (QuaRot's offline rotation: norms folded into the linears that read "
       "them, embedding, every block and the head rotated as they load). hadamard: a randomized Hadamard "
       "matrix (fast; the hidden size must be 2^k or m 2^k with a known Hadamard order m); random: a "
       "Haar-random orthogonal matrix of any size (dense, O(hidden^2) per token). Without "
       "--abits/--kv-bits the perplexity moves by float rounding only; with them the quantized "
       "activations are those of the rotated stream")
      ("rotate-seed", po::value(&job.rotate_seed)->default_value(0),
       "--rotate hadamard: the random signs' seed; --rotate random: the matrix's seed");
  opts.add_options()
      ("online-hadamard", po::bool_switch(&job.online_hadamard),
       "QuaRot's online Hadamard (R4): down_proj's input rotated by the Hadamard transform of the intermediate "
       "size in every forward (before --abits quantizes it), down_proj's weight by the same as each block "
       "loads; the intermediate size must be 2^k or m 2^k with a known Hadamard order m. Works with or "
       "without --rotate; without --abits the perplexity moves by float rounding only");
  DeviceFlags df;
  add_device_flags(opts, &df, false);
  po::variables_map vm;
  if (!parse("eval", "--model DIR --data FILE [flags]", opts, args, &vm)) return 0;
  require(vm, {"model"});
  if (vm.count("data") == vm.count("eval-text"))
    throw InputError("pass exactly one of --data (token ids) and --eval-text (text)");
  job.tokens_dtype = parse_tokens_dtype(tokens_dtype);
  finish_act_quant_flags(vm, job.act, job.kv);
  if (rotate != "none" && rotate != "hadamard" && rotate != "random")
    throw InputError("--rotate '" + rotate + "': expected none, hadamard or random");
  job.rotate = rotate == "hadamard" ? EvalJob::Rotate::Hadamard
               : rotate == "random" ? EvalJob::Rotate::Random
                                    : EvalJob::Rotate::None;
  if (job.rotate == EvalJob::Rotate::None && vm.count("rotate-seed") && !vm["rotate-seed"].defaulted())
    throw InputError("--rotate-seed needs --rotate hadamard or random: without it the value would be ignored");
  const auto limit = set_threads(threads);
  OpenedDevice device = open_device(df, vm);
  if (!quiet) std::cerr << "eval: device " << device.description << "\n";
  const EvalResult r = run_eval(job, device.backend(), quiet ? nullptr : &std::cerr);
  std::printf("windows %lld\npredictions %lld\nmean_nll %.7f\nseconds %.2f\npeak_rss_bytes %llu\nppl %.6f\n",
              static_cast<long long>(r.windows), static_cast<long long>(r.predictions), r.mean_nll, r.seconds,
              static_cast<unsigned long long>(r.peak_rss_bytes), r.ppl);
  return 0;
}

}  // namespace streamq::cli
