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
  RotationFlags rot;
  add_rotation_flags(opts, &rot, RotationUse::Eval);
  DeviceFlags df;
  add_device_flags(opts, &df, false);
  po::variables_map vm;
  if (!parse("eval", "--model DIR --data FILE [flags]", opts, args, &vm)) return 0;
  require(vm, {"model"});
  if (vm.count("data") == vm.count("eval-text"))
    throw InputError("pass exactly one of --data (token ids) and --eval-text (text)");
  job.tokens_dtype = parse_tokens_dtype(tokens_dtype);
  finish_act_quant_flags(vm, job.act, job.kv);
  finish_rotation_flags(vm, &rot);
  job.rotation = rot.spec;
  const auto limit = set_threads(threads);
  OpenedDevice device = open_device(df, vm);
  job.device_weights = device.device_weights;
  if (!quiet) std::cerr << "eval: device " << device.description << "\n";
  const EvalResult r = run_eval(job, device.backend(), quiet ? nullptr : &std::cerr);
  std::printf("windows %lld\npredictions %lld\nmean_nll %.7f\nseconds %.2f\npeak_rss_bytes %llu\nppl %.6f\n",
              static_cast<long long>(r.windows), static_cast<long long>(r.predictions), r.mean_nll, r.seconds,
              static_cast<unsigned long long>(r.peak_rss_bytes), r.ppl);
  return 0;
}

}  // namespace streamq::cli
