// `streamq quantize`: flags -> QuantizeJob -> pipeline, summary on stderr.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "tools/cli_common.h"
#include "tools/cli_device.h"
#include "tools/cli_method_flags.h"
#include "src/core/error.h"
#include "src/core/kill_point.h"
#include "kernels/backend.h"
#include "src/report/progress.h"
#include "src/export/gguf_export.h"
#include "src/pipeline/quantize.h"
#include "scheduler/memory_budget.h"

namespace streamq::cli {
namespace {

Placement parse_placement(const std::string& s) {
  if (s == "auto") return Placement::Auto;
  if (s == "memory") return Placement::Memory;
  if (s == "disk") return Placement::Disk;
  throw InputError("--activations '" + s + "': expected auto, memory or disk");
}

}  // namespace

int run_quantize(const std::vector<std::string>& args) {
  QuantizeJob job;
  std::string format;  // --format, parsed once into job.format
  MethodFlags mf;
  std::string tokens_dtype, activations, io_path, host_mem_limit, gguf_type;
  std::string calib_select, calib_split;  // --calib-samples: which samples, how a text file is cut
  int threads = 0;
  bool quiet = false;
  const std::string host_mem_help =
      "host memory the job may use (default unlimited). The memory plan (printed, and in the report) picks "
      "placement, sequences per chunk and I/O depth to stay under it, and fails up front with what it needs "
      "when even the minimum does not fit (it assumes the allocator policy in streamq --help). " +
      std::string(kSizeGrammar);
  po::options_description opts("quantize flags");
  opts.add_options()
      ("help,h", "show this help")
      ("model", po::value(&job.model_dir), "input model: an HF directory (config.json + *.safetensors) or a GGUF file (llama architecture; dequantized to float32 first)")
      ("out", po::value(&job.out_dir), "output directory: fake-quant checkpoint (same tensors and dtypes, "
       "weights replaced by dequantized values), config/tokenizer files, streamq_quant.safetensors (codes, "
       "scales, zeros, g_idx) and streamq_report.json; written as <out>.partial-<pid> and renamed when complete")
      ("overwrite", po::bool_switch(), "replace --out if it exists and is not empty")
      ("format", po::value(&format)->default_value("fake"),
       "what --out holds: fake (the fake-quant checkpoint in the input's layout and dtypes, plus "
       "streamq_quant.safetensors with codes/scales/zeros/g_idx; `streamq export` packs it later) or gptq (the "
       "packed GPTQ checkpoint vLLM and transformers load, in --checkpoint-format; linears the format cannot "
       "hold stay dense and are listed; docs/gptq-format.md), compressed-tensors (the pack-quantized checkpoint "
       "vLLM's WNA16 kernels load; 2, 4 or 8 bits; docs/compressed-tensors-format.md) or gguf (the fake output "
       "plus <out>/model.gguf, a "
       "llama.cpp GGUF in --gguf-type; docs/gguf-export.md)")
      ("gguf-type", po::value(&gguf_type),
       "with --format gguf: Q4_0 or Q8_0 (4/8-bit symmetric g32) or Q4_1 (4-bit g32 with a free fp16 min); "
       "implies --bits, --group 32 and the grid, and an explicit flag that disagrees is an error")
      ("workdir", po::value(&job.workdir),
       "make the job resumable: DIR keeps a manifest (model fingerprint, method, calibration hash, last finished "
       "block, checksums), each finished block and the next block's input activations (compressed, fsynced; "
       "with memory placement they stay in memory too and are mirrored to DIR by a background writer). Running the same command again after a crash or kill resumes after the "
       "last finished block and gives byte-identical outputs; a different model, method or calibration is "
       "refused (see --restart). `streamq status --workdir DIR` shows progress")
      ("restart", po::bool_switch(&job.restart), "discard the job found in --workdir and start over")
      ("calib", po::value(&job.calib_path), "calibration token ids: little-endian, no header (see --tokens-dtype)")
      ("calib-text", po::value(&job.calib_text_path),
       "calibration text instead of --calib: a .txt file (one document) or .jsonl (the \"text\" field of each "
       "line, one document each), tokenized with the model's tokenizer.json, BOS/EOS per its config")
      ("calib-samples", po::value(&job.calib_samples_path),
       "calibration samples instead of --calib/--calib-text, one sequence each: a .jsonl file (each line a "
       "\"text\" string, or \"messages\" [{role, content}, ...] rendered with the model's chat template from "
       "chat_template.jinja or tokenizer_config.json, as transformers' apply_chat_template does) or a text file "
       "(one sample per line, or per blank-line-separated paragraph: see --calib-split). Each sample is "
       "tokenized on its own, cut to --seqlen (the report counts those truncated), shorter ones kept at their "
       "length: no padding, attention within the sample only")
      ("calib-select", po::value(&calib_select)->default_value("random"),
       "which --nsamples samples of --calib-samples: random (drawn without replacement with --seed) or first")
      ("calib-split", po::value(&calib_split)->default_value("auto"),
       "samples of a --calib-samples text file: line, paragraph (blank-line separated), or auto (paragraphs "
       "when a blank line separates text, else lines)")
      ("tokens-dtype", po::value(&tokens_dtype)->default_value("uint16"), "id width of --calib: uint16 or int32")
      ("nsamples", po::value(&job.nsamples)->default_value(128),
       "calibration sequences: windows drawn from --calib/--calib-text, or samples of --calib-samples")
      ("seqlen", po::value(&job.seqlen)->default_value(2048),
       "tokens per calibration window (--calib-samples: the most tokens per sample)")
      ("seed", po::value(&job.seed)->default_value(0),
       "seed of the window or sample draw (same seed, same output bytes)")
      ("chunk-tokens", po::value(&job.chunk_tokens)->default_value(4096),
       "tokens per activation chunk (whole sequences; bounds activation memory)")
      ("activations", po::value(&activations)->default_value("auto"),
       "where block-boundary activations live: auto (memory when --host-mem-limit holds them, else disk), "
       "memory, or disk (zstd-compressed float32 chunks with xxh64 checksums, read and written through io_uring "
       "with O_DIRECT by a background thread that reads ahead and writes behind). With --workdir, memory "
       "placement also writes each boundary to the workdir in the background so the job can resume")
      ("host-mem-limit", po::value<std::string>(&host_mem_limit),
       host_mem_help.c_str())
      ("prefetch-depth", po::value(&job.prefetch_depth)->default_value(2),
       "chunks read ahead and written behind while compute runs (disk placement, and the workdir mirror of "
       "memory placement; the plan may lower it); above 0 the next block's weights are also read into the page "
       "cache while the current block computes. 0 = no read-ahead at all")
      ("linear-concurrency", po::value(&job.linear_concurrency)->default_value(0),
       "linears of one sub-layer group (q,k,v share an input; gate,up share one) quantized at the same time, "
       "each with its own working set: 0 = as many as fit under --host-mem-limit (up to the largest group, 3), "
       "N = at most N (the plan may lower it; shown in the plan and the report). Output bytes never depend on it")
      ("recompute-group-inputs", po::bool_switch(&job.recompute_group_inputs),
       "get each sub-layer group's statistics by rerunning the block from its start on one chunk at a time, "
       "instead of computing every chunk's group input once (staged, the default): kept in host memory on "
       "the CPU where the memory plan fits it under --host-mem-limit and the activations are in memory; "
       "else spilled through a store of their own, into host memory on a device where that fits, else to "
       "disk (float32 zstd beside the activations); else recomputed. The report's group_inputs says which "
       "ran, what it held or why not. Same bytes every way; staged runs about a third of the forwards")
      ("io", po::value(&io_path)->default_value("auto"),
       "disk activations' I/O path: auto (io_uring, else pread/pwrite, said once), uring (fail if unavailable), "
       "posix")
      ("zstd-level", po::value(&job.zstd_level)->default_value(1),
       "disk activations' zstd level (1: measured best ratio and speed on real activations, bench/RESULTS.md)")
      ("report", po::value(&job.report_path), "also write the JSON run report to this file")
      ("trace", po::value(&job.trace_path),
       "write a Chrome trace-event JSON of the run (open in Perfetto or chrome://tracing; summarize with "
       "`streamq profile`); the end-of-run summary shows stage totals and I/O overlap")
      ("threads", po::value(&threads)->default_value(0), "worker threads; 0 = all cores")
      ("quiet", po::bool_switch(&quiet), "no progress lines on stderr");
  add_method_flags(opts, mf);
  std::string learn = "none";
  opts.add_options()
      ("learn", po::value(&learn)->default_value("none"),
       "learned weight adjustment before the method (CQE+, docs/learning.md): none, or sde: each block's linears "
       "re-parameterized through their SVD, W' = U (S + band) V^T, the band trained with Adam so that the block "
       "with W' fake-quantized on the job's grid (straight-through) reproduces the FP block's outputs from the "
       "quantized flow's inputs; then --method quantizes W'. Runs the FP flow whatever the method reads; "
       "on a device the whole step runs there but the loss and Adam's update of the band. A block's training is the unit of durability: a job killed mid-training "
       "redoes that block on resume, to the same bytes. Measured (bench/RESULTS.md): it lowers RTN's perplexity "
       "most, and every method's at 2 bits on stories260K; on SmolLM2 it raised GPTQ's, GPTAQ's and LoaQ's "
       "at 3 bits and GPTQ's and LoaQ's at 2 (likely because the band is fitted to RTN's rounding); at W4A4 it "
       "lowered GPTAQ+CAE's on each of 3 seeds to the lowest W4A4 figure, so --preset best turns it on with "
       "--abits below 16 (see --preset); --learn none turns it off")
      ("sde-band", po::value(&job.learn.band)->default_value(job.learn.band),
       "with --learn sde: learnable diagonals each side of the singular values' main diagonal (0 = LSI's "
       "diagonal only; the paper's 100; clamped to the linear's rank - 1)")
      ("cl-lambda", po::value(&job.learn.cl_lambda)->default_value(job.learn.cl_lambda),
       "with --learn sde: weight of the cross-layer term, the MSE of the frozen FP next block's outputs (the "
       "paper's 0.05; 0 = the block's own output only; the last block has none)")
      ("learn-epochs", po::value(&job.learn.epochs)->default_value(job.learn.epochs),
       "with --learn sde: passes over the calibration sequences per block")
      ("learn-lr", po::value(&job.learn.lr)->default_value(job.learn.lr),
       "with --learn sde: Adam's learning rate (the paper's 2.5e-4; betas 0.9/0.999, no weight decay)")
      ("learn-batch", po::value(&job.learn.batch_seqs)->default_value(job.learn.batch_seqs),
       "with --learn sde: calibration sequences per training step");
  add_act_quant_flags(opts, &job.act, &job.kv);
  RotationFlags rot;
  add_rotation_flags(opts, &rot, RotationUse::Quantize);
  DeviceFlags df;
  add_device_flags(opts, &df, true);
  po::variables_map vm;
  if (!parse("quantize", "--model DIR --out DIR --calib FILE [flags]", opts, args, &vm)) return 0;
  require(vm, {"model", "out"});
  job.format = parse_output_format(format);
  if (vm.count("calib") + vm.count("calib-text") + vm.count("calib-samples") != 1)
    throw InputError("pass exactly one of --calib (token ids), --calib-text (text) and --calib-samples (samples)");
  for (const char* f : {"calib-select", "calib-split"})
    if (!vm[f].defaulted() && !vm.count("calib-samples"))
      throw InputError(std::string("--") + f + " needs --calib-samples: without it the value would be ignored");
  if (!vm["tokens-dtype"].defaulted() && !vm.count("calib"))
    throw InputError("--tokens-dtype needs --calib (token ids): text is tokenized with the model's tokenizer");
  if (learn == "sde") job.learn.kind = LearnKind::Sde;
  else if (learn != "none") throw InputError("--learn '" + learn + "': expected none or sde");
  job.calib_select = parse_sample_select(calib_select);
  job.calib_split = parse_text_split(calib_split);
  // --format gguf implies the block's bits and group before the flags are
  // validated (--static-groups needs a group); disagreeing flags fail below.
  if (job.format == OutputFormat::Gguf && !gguf_type.empty()) {
    QuantConfig implied = mf.quant;
    apply_gguf_grid(parse_gguf_quant_type(gguf_type), implied);
    if (vm["bits"].defaulted()) mf.quant.bits = implied.bits;
    if (vm["group"].defaulted()) mf.quant.group = implied.group;
  }
  PresetTarget target = PresetTarget::AsymmetricOk;
  if (job.format == OutputFormat::Gptq) target = PresetTarget::SymmetricOnly;
  if (job.format == OutputFormat::Gguf)
    target = !gguf_type.empty() && parse_gguf_quant_type(gguf_type) == GgufQuantType::Q4_1 ? PresetTarget::GgufFreeMin
                                                                                          : PresetTarget::GgufIntegerGrid;
  mf.act_quant = job.act.enabled();
  mf.learn_free = vm["learn"].defaulted();
  const std::string preset_line = finish_method_flags(mf, vm, target);
  job.preset = mf.preset;
  if (mf.preset_learn_sde) {
    job.learn.kind = LearnKind::Sde;
    if (vm["cl-lambda"].defaulted()) job.learn.cl_lambda = 0;
  }
  // After the preset: a learning parameter is meaningful where it turned --learn sde on.
  for (const char* f : {"sde-band", "cl-lambda", "learn-epochs", "learn-lr", "learn-batch"})
    if (!vm[f].defaulted() && !job.learn.enabled())
      throw InputError(std::string("--") + f + " needs --learn sde: without it the value would be ignored");
  if (!gguf_type.empty() && job.format != OutputFormat::Gguf) throw InputError("--gguf-type needs --format gguf");
  if (job.format == OutputFormat::Gguf) {
    if (gguf_type.empty()) throw InputError("--format gguf needs --gguf-type Q4_0, Q4_1 or Q8_0");
    const GgufQuantType t = parse_gguf_quant_type(gguf_type);
    const std::string with = " conflicts with --format gguf --gguf-type " + gguf_type;
    QuantConfig want = mf.quant;
    apply_gguf_grid(t, want);
    if (!vm["bits"].defaulted() && mf.quant.bits != want.bits) throw InputError("--bits " + std::to_string(mf.quant.bits) + with);
    if (!vm["group"].defaulted() && mf.quant.group != want.group)
      throw InputError("--group " + std::to_string(mf.quant.group) + with + " (32-wide blocks)");
    if (mf.asym && want.sym) throw InputError("--asym" + with + " (symmetric blocks)");
    if (mf.sym && !want.sym) throw InputError("--sym" + with + " (a free fp16 min per block)");
    if (want.act_order && !want.static_groups && !want.two_stage() && want.method != MethodKind::Rtn)
      throw InputError("--act-order without --static-groups" + with + " (blocks are 32 consecutive inputs)");
    want.validate();
    mf.quant = want;
  }
  job.quant = mf.quant;
  job.loaq = mf.loaq;
  finish_act_quant_flags(vm, job.act, job.kv);
  finish_rotation_flags(vm, &rot);
  job.rotation = rot.spec;
  job.tokens_dtype = parse_tokens_dtype(tokens_dtype);
  job.overwrite = vm["overwrite"].as<bool>();
  job.activations = parse_placement(activations);
  job.io_path = parse_io_path(io_path);
  if (vm.count("host-mem-limit")) job.host_mem_limit = parse_size(host_mem_limit, "--host-mem-limit");
  if (job.prefetch_depth < 0) throw InputError("--prefetch-depth must be >= 0");
  if (job.linear_concurrency < 0) throw InputError("--linear-concurrency must be >= 0 (0 = auto)");
  if (job.chunk_tokens < 1) throw InputError("--chunk-tokens must be >= 1");
  if (job.restart && job.workdir.empty()) throw InputError("--restart needs --workdir");
  // Test-only hook of the crash test (tests/job/test_resume.cpp): SIGKILL at a
  // named point of the job, e.g. "put:3" or "manifest:2" (src/core/kill_point.h).
  if (const char* k = std::getenv("STREAMQ_TEST_KILL_AT")) arm_kill_point(k);

  const auto limit = set_threads(threads);
  OpenedDevice device = open_device(df, vm);
  job.sweep_precision = device.sweep_precision;
  job.factor_precision = device.factor_precision;
  job.device_weights = device.device_weights;
  if (!quiet) {
    if (!preset_line.empty()) std::cerr << "quantize: " << preset_line << "\n";
    std::cerr << "quantize: device " << device.description << "\n";
  }
  const QuantizeReport r = run_quantize(job, device.backend(), quiet ? nullptr : &std::cerr);
  if (!quiet) {
    int64_t n = 0, retries = 0;
    for (const auto& b : r.blocks)
      for (const auto& l : b.linears) {
        retries += l.cholesky_retries;
        ++n;
      }
    char buf[768];
    std::snprintf(buf, sizeof buf,
                  "done: %s, %lld linears, mean relative objective %.4e, cholesky retries %lld, total %s "
                  "(user %.1f s, system %.1f s, %.0fk minor page faults), peak RSS %.1f MiB -> %s\n",
                  r.method.c_str(), static_cast<long long>(n), mean_relative_objective(r.blocks),
                  static_cast<long long>(retries),
                  format_duration(r.total_seconds).c_str(), r.process.value("user_seconds", 0.0),
                  r.process.value("system_seconds", 0.0), r.process.value("minor_page_faults", 0.0) / 1000.0,
                  r.peak_rss_bytes / 1048576.0, job.out_dir.c_str());
    if (!r.already_complete) std::cerr << buf;
    if (!r.profile_text.empty()) std::cerr << r.profile_text;
  }
  return 0;
}

}  // namespace streamq::cli
