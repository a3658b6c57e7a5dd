// `streamq quantize`: flags -> QuantizeJob -> pipeline, summary on stderr.
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "pipeline/progress.h"
#include "pipeline/quantize.h"

namespace streamq::cli {
namespace {

GridStyle parse_grid_style(const std::string& s) {
  if (s == "quarot") return GridStyle::Quarot;
  if (s == "gptq") return GridStyle::Gptq;
  throw InputError("--grid-style '" + s + "': expected quarot or gptq");
}

ClipSearch parse_grid(const std::string& s) {
  if (s == "minmax") return ClipSearch::MinMax;
  if (s == "mse") return ClipSearch::Mse;
  if (s == "two-stage") return ClipSearch::TwoStage;
  throw InputError("--grid '" + s + "': expected minmax, mse or two-stage");
}

MethodKind parse_method(const std::string& s) {
  if (s == "rtn") return MethodKind::Rtn;
  if (s == "gptq") return MethodKind::Gptq;
  if (s == "gptaq") return MethodKind::Gptaq;
  throw InputError("--method '" + s + "': expected rtn, gptq or gptaq");
}

Variant parse_variant(const std::string& s) {
  if (s == "exact") return Variant::Exact;
  if (s == "official") return Variant::Official;
  throw InputError("--variant '" + s + "': expected exact or official");
}

CaeSource parse_cae_source(const std::string& s) {
  if (s == "xx") return CaeSource::Xx;
  if (s == "xfx") return CaeSource::Xfx;
  throw InputError("--cae-source '" + s + "': expected xx or xfx");
}

}  // namespace

int run_quantize(const std::vector<std::string>& args) {
  QuantizeJob job;
  QuantConfig& q = job.quant;
  std::string tokens_dtype, method, grid_style, grid, activations, calib_text, variant, cae_source;
  int threads = 0;
  bool sym = false, asym = false, quiet = false;
  po::options_description opts("quantize flags");
  opts.add_options()
      ("help,h", "show this help")
      ("model", po::value(&job.model_dir), "input model directory (config.json + *.safetensors)")
      ("out", po::value(&job.out_dir), "output directory: fake-quant checkpoint (same tensors and dtypes, "
       "weights replaced by dequantized values), config/tokenizer files, streamq_quant.safetensors (codes, "
       "scales, zeros, g_idx) and streamq_report.json; written as <out>.partial-<pid> and renamed when complete")
      ("overwrite", po::bool_switch(), "replace --out if it exists and is not empty")
      ("calib", po::value(&job.calib_path), "calibration token ids: little-endian, no header (see --tokens-dtype)")
      ("calib-text", po::value(&calib_text), "calibration text (not supported yet: tokenize to ids first)")
      ("tokens-dtype", po::value(&tokens_dtype)->default_value("uint16"), "id width of --calib: uint16 or int32")
      ("nsamples", po::value(&job.nsamples)->default_value(128), "calibration windows drawn from --calib")
      ("seqlen", po::value(&job.seqlen)->default_value(2048), "tokens per calibration window")
      ("seed", po::value(&job.seed)->default_value(0), "seed of the window draw (same seed, same output bytes)")
      ("method", po::value(&method)->default_value("gptq"),
       "rtn | gptq | gptaq (GPTQ with asymmetric calibration: also aligns each linear with the FP model's "
       "input, through the P1 term built from dX X^T)")
      ("cae", po::bool_switch(&q.cae),
       "add the compensation-aware error term P2 (compensation paper) to gptq or gptaq")
      ("cae-source", po::value(&cae_source)->default_value("xx"),
       "gptq+cae: build P2 from X X^T (xx, the paper's Algorithm 2 with dX = 0) or X~ X^T (xfx)")
      ("gptaq-alpha", po::value(&q.gptaq_alpha)->default_value(0.25),
       "gptaq: scale of P1 (0.25 as in the released code; 1 is the paper's math)")
      ("cae-alpha", po::value(&q.cae_alpha)->default_value(0.25),
       "cae: scale of P2 (0.25 as in the released code; 1 is the paper's math)")
      ("variant", po::value(&variant)->default_value("exact"),
       "exact: the exact, blocksize-invariant update; official: the released code's shortcuts (quantized "
       "values in cross-block P1/P2 terms, group grids from block-start weights) to reproduce the papers")
      ("p1-original", po::bool_switch(&q.p1_original),
       "gptaq: use the original weights w0 in the P1 term (the consistent FP-aligned target; use with "
       "--gptaq-alpha 1)")
      ("bits", po::value(&q.bits)->default_value(4), "weight bits: 2..8")
      ("group", po::value(&q.group)->default_value(-1), "input columns per scale group; -1 = one per output row")
      ("sym", po::bool_switch(&sym), "symmetric grid (the default)")
      ("asym", po::bool_switch(&asym), "asymmetric grid with a zero point")
      ("grid-style", po::value(&grid_style)->default_value("quarot"),
       "integer grid: quarot (signed symmetric range, as the GPTAQ/CAE code) or gptq (the original GPTQ's)")
      ("grid", po::value(&grid)->default_value("minmax"),
       "range per row/group: minmax, mse (GPTQ's search over shrink factors minimizing sum |q-x|^norm), or "
       "two-stage (two-stage paper: each group's scale searched to minimize its H-weighted error before the "
       "sweep, groups then fixed as with --static-groups; after the sweep, integers frozen, the scales refined "
       "by coordinate descent on ||W X~ - Q X||^2; works with every --method; collects the FP flow)")
      ("scale-refine-iters", po::value(&q.scale_refine_iters)->default_value(1),
       "two-stage: coordinate-descent passes over all group scales after the sweep (0: stage 1 only)")
      ("mse-grid", po::value(&q.mse_grid)->default_value(100), "mse: shrink factors are 1 - i/mse-grid")
      ("mse-max-shrink", po::value(&q.mse_max_shrink)->default_value(0.8), "mse: i < mse-max-shrink * mse-grid")
      ("mse-norm", po::value(&q.mse_norm)->default_value(2.4), "mse: exponent of the error")
      ("act-order", po::bool_switch(&q.act_order), "gptq: quantize columns by descending diag(H)")
      ("static-groups", po::bool_switch(&q.static_groups),
       "gptq: fix each group's grid up front in original column order (with --act-order keeps groups contiguous)")
      ("percdamp", po::value(&q.percdamp)->default_value(0.01), "gptq: damping, fraction of mean diag(H)")
      ("blocksize", po::value(&q.blocksize)->default_value(128), "gptq: lazy-batch block of columns")
      ("chunk-tokens", po::value(&job.chunk_tokens)->default_value(4096),
       "tokens per activation chunk (whole sequences; bounds activation memory)")
      ("activations", po::value(&activations)->default_value("memory"),
       "where block-boundary activations live: memory or disk (under the staging directory)")
      ("report", po::value(&job.report_path), "also write the JSON run report to this file")
      ("threads", po::value(&threads)->default_value(0), "worker threads; 0 = all cores")
      ("quiet", po::bool_switch(&quiet), "no progress lines on stderr");
  po::variables_map vm;
  if (!parse("quantize", "--model DIR --out DIR --calib FILE [flags]", opts, args, &vm)) return 0;
  if (vm.count("calib-text"))
    throw InputError("--calib-text " + calib_text +
                     ": text calibration needs tokenizer.json support, which is not in streamq yet; pass token ids "
                     "with --calib (little-endian uint16/int32, no header)");
  require(vm, {"model", "out", "calib"});
  if (sym && asym) throw InputError("--sym and --asym exclude each other");
  q.sym = !asym;
  q.method = parse_method(method);
  q.variant = parse_variant(variant);
  q.cae_source = parse_cae_source(cae_source);
  q.grid_style = parse_grid_style(grid_style);
  q.clip = parse_grid(grid);
  job.tokens_dtype = parse_tokens_dtype(tokens_dtype);
  job.overwrite = vm["overwrite"].as<bool>();
  if (activations != "memory" && activations != "disk")
    throw InputError("--activations '" + activations + "': expected memory or disk");
  job.disk_store = activations == "disk";
  if (job.chunk_tokens < 1) throw InputError("--chunk-tokens must be >= 1");
  q.validate();

  const auto limit = set_threads(threads);
  auto backend = make_cpu_backend();
  const QuantizeReport r = run_quantize(job, *backend, quiet ? nullptr : &std::cerr);
  if (!quiet) {
    double rel = 0;
    int64_t n = 0, retries = 0;
    for (const auto& b : r.blocks)
      for (const auto& l : b.linears) {
        rel += l.weight_sq > 0 ? l.objective / l.weight_sq : 0;
        retries += l.cholesky_retries;
        ++n;
      }
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "done: %s, %lld linears, mean relative objective %.4e, cholesky retries %lld, total %s, "
                  "peak RSS %.1f MiB -> %s\n",
                  r.method.c_str(), static_cast<long long>(n), n ? rel / n : 0.0, static_cast<long long>(retries),
                  format_duration(r.total_seconds).c_str(), r.peak_rss_bytes / 1048576.0, job.out_dir.c_str());
    std::cerr << buf;
  }
  return 0;
}

}  // namespace streamq::cli
