// Method flags: definitions with help text, and parsing into QuantConfig.
#include "tools/cli_method_flags.h"

#include "src/core/error.h"
#include "src/methods/method.h"

namespace streamq::cli {
namespace po = boost::program_options;
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

CheckpointFormat parse_checkpoint_format(const std::string& s) {
  if (s == "gptq") return CheckpointFormat::Gptq;
  if (s == "gptq_v2") return CheckpointFormat::GptqV2;
  throw InputError("--checkpoint-format '" + s + "': expected gptq or gptq_v2");
}

bool given(const po::variables_map& vm, const char* flag) { return vm.count(flag) && !vm[flag].defaulted(); }

// A parameter given without the setting it belongs to would be silently
// ignored, and the user would believe the method ran: each is an error (exit
// 2) naming what is missing. One rule for every row: nothing is implied.
struct FlagNeeds {
  const char* flag;
  const char* needs;
  bool (*met)(const QuantConfig&, const LoaqConfig&);
};

bool gptq_family(const QuantConfig& q, const LoaqConfig&) { return q.method != MethodKind::Rtn; }

const FlagNeeds kFlagNeeds[] = {
    {"loaq-alpha", "--loaq", [](const QuantConfig&, const LoaqConfig& l) { return l.enabled; }},
    {"loaq-beta", "--loaq", [](const QuantConfig&, const LoaqConfig& l) { return l.enabled; }},
    {"loaq-norm", "--loaq", [](const QuantConfig&, const LoaqConfig& l) { return l.enabled; }},
    {"cae-source", "--cae", [](const QuantConfig& q, const LoaqConfig&) { return q.cae; }},
    {"cae-alpha", "--cae", [](const QuantConfig& q, const LoaqConfig&) { return q.cae; }},
    {"gptaq-alpha", "--method gptaq", [](const QuantConfig& q, const LoaqConfig&) { return q.method == MethodKind::Gptaq; }},
    {"p1-original", "--method gptaq", [](const QuantConfig& q, const LoaqConfig&) { return q.method == MethodKind::Gptaq; }},
    {"scale-refine-iters", "--grid two-stage", [](const QuantConfig& q, const LoaqConfig&) { return q.two_stage(); }},
    {"mse-grid", "--grid mse", [](const QuantConfig& q, const LoaqConfig&) { return q.clip == ClipSearch::Mse; }},
    {"mse-max-shrink", "--grid mse", [](const QuantConfig& q, const LoaqConfig&) { return q.clip == ClipSearch::Mse; }},
    {"mse-norm", "--grid mse", [](const QuantConfig& q, const LoaqConfig&) { return q.clip == ClipSearch::Mse; }},
    {"static-groups", "--group N (N > 0)", [](const QuantConfig& q, const LoaqConfig&) { return q.group > 0; }},
    {"static-groups", "--method gptq or gptaq (rtn's groups are static already)", gptq_family},
    {"act-order", "--method gptq or gptaq (rtn has no column order)", gptq_family},
    {"blocksize", "--method gptq or gptaq", gptq_family},
    {"variant", "--method gptq or gptaq", gptq_family},
    {"percdamp", "--method gptq or gptaq, or --loaq",
     [](const QuantConfig& q, const LoaqConfig& l) { return q.method != MethodKind::Rtn || l.enabled; }},
};

}  // namespace

void check_method_flag_dependencies(const po::variables_map& vm, const QuantConfig& q, const LoaqConfig& loaq) {
  for (const FlagNeeds& n : kFlagNeeds) {
    if (given(vm, n.flag) && !n.met(q, loaq))
      throw InputError(std::string("--") + n.flag + " needs " + n.needs +
                       ": without it the value would be ignored; add it or drop --" + n.flag);
  }
}

void add_method_flags(po::options_description& opts, MethodFlags& f) {
  QuantConfig& q = f.quant;
  opts.add_options()
      ("method", po::value(&f.method)->default_value("gptq"),
       "rtn | gptq | gptaq (GPTQ with asymmetric calibration: also aligns each linear with the FP model's "
       "input, through the P1 term built from dX X^T)")
      ("cae", po::bool_switch(&q.cae),
       "add the compensation-aware error term P2 (compensation paper) to gptq or gptaq")
      ("cae-source", po::value(&f.cae_source)->default_value("xx"),
       "gptq+cae: build P2 from X X^T (xx, the paper's Algorithm 2 with dX = 0) or X~ X^T (xfx)")
      ("gptaq-alpha", po::value(&q.gptaq_alpha)->default_value(0.25),
       "gptaq: scale of P1 (0.25 as in the released code; 1 is the paper's math)")
      ("cae-alpha", po::value(&q.cae_alpha)->default_value(0.25),
       "cae: scale of P2 (0.25 as in the released code; 1 is the paper's math)")
      ("variant", po::value(&f.variant)->default_value("exact"),
       "exact: the exact, blocksize-invariant update; official: the released code's shortcuts (quantized "
       "values in cross-block P1/P2 terms, group grids from block-start weights) to reproduce the papers")
      ("p1-original", po::bool_switch(&q.p1_original),
       "gptaq: use the original weights w0 in the P1 term (the consistent FP-aligned target; use with "
       "--gptaq-alpha 1)")
      ("loaq", po::bool_switch(&f.loaq.enabled),
       "LoaQ: quantize the output-approximating target W (I + a D1 H^-1) + b E H^-1 instead of W (input "
       "projections: linear-layer term; o_proj/down_proj: also the residual-stream term); combines with any method")
      ("loaq-alpha", po::value(&f.loaq.alpha)->default_value(0.5), "loaq: weight a of the linear-layer term (0..1)")
      ("loaq-beta", po::value(&f.loaq.beta)->default_value(0.5),
       "loaq: weight b of the sub-layer (residual) term for o_proj/down_proj (0..1)")
      ("loaq-norm", po::bool_switch(&f.loaq.norm),
       "loaq: approximate the RMS-normalized sub-layer outputs (rescale tokens by their output's RMS factor)")
      ("bits", po::value(&q.bits)->default_value(4), "weight bits: 2..8")
      ("group", po::value(&q.group)->default_value(-1), "input columns per scale group; -1 = one per output row")
      ("sym", po::bool_switch(&f.sym), "symmetric grid (the default)")
      ("asym", po::bool_switch(&f.asym), "asymmetric grid with a zero point")
      ("checkpoint-format", po::value(&f.checkpoint_format)->default_value("gptq"),
       "GPTQ checkpoint the grids must fit (see streamq export --help): gptq (classic layout that vLLM, "
       "transformers and gptqmodel load; stores zero - 1, so --asym zero points are kept >= 1 by widening the "
       "scale where min/max would give 0) or gptq_v2 (zero points stored as is, 0 allowed; read by gptqmodel "
       "and vLLM's gptq kernel, not by AutoGPTQ or older vLLM). Symmetric grids are identical in both")
      ("grid-style", po::value(&f.grid_style)->default_value("quarot"),
       "integer grid: quarot (signed symmetric range, as the GPTAQ/CAE code) or gptq (the original GPTQ's)")
      ("grid", po::value(&f.grid)->default_value("minmax"),
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
      ("blocksize", po::value(&q.blocksize)->default_value(128), "gptq: lazy-batch block of columns");
}

void finish_method_flags(MethodFlags& f, const po::variables_map& vm) {
  if (f.sym && f.asym) throw InputError("--sym and --asym exclude each other");
  QuantConfig& q = f.quant;
  q.sym = !f.asym;
  q.method = parse_method(f.method);
  q.variant = parse_variant(f.variant);
  q.cae_source = parse_cae_source(f.cae_source);
  q.grid_style = parse_grid_style(f.grid_style);
  q.clip = parse_grid(f.grid);
  q.checkpoint_format = parse_checkpoint_format(f.checkpoint_format);
  check_method_flag_dependencies(vm, q, f.loaq);
  MethodSpec(q, f.loaq).validate();
}

}  // namespace streamq::cli
