// Method flags: definitions with help text, and parsing into QuantConfig.
#include "tools/cli_method_flags.h"

#include <vector>

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

// The best preset (bench/defaults_table.sh, bench/RESULTS.md "Defaults": at
// 3 calibration seeds per cell, LoaQ + two-stage + act-order won every cell on
// stories260K w4/w3 g32 and SmolLM2-135M w4 g128, asymmetric ahead of
// symmetric in each). Fills only what the command line left at its default.
//
// With quantized activations (W4A4, bench/learn_tables.sh, bench/RESULTS.md
// fourteenth session) the best measured setting is another: on SmolLM2-135M
// with R1-R4, GPTAQ+CAE with SDE was below LoaQ two-stage on each of 3 seeds
// on both grids (asymmetric 58.9 against 63.6, symmetric 60.0 against 64.0;
// FP 36.0), where plain GPTAQ+CAE was level with LoaQ and SDE raised LoaQ's
// figure; the cross-layer term added nothing. It applies where the method is
// left to the preset (no --method, no --loaq) and the format's grid is the
// preset's to choose (not GGUF, whose types fix the grid).
std::string apply_best_preset(MethodFlags& f, const po::variables_map& vm, PresetTarget t) {
  QuantConfig& q = f.quant;
  std::vector<std::string> set;
  const bool free_min = t == PresetTarget::GgufFreeMin;
  const bool w4a4 = f.act_quant && !given(vm, "method") && !given(vm, "loaq") &&
                    (t == PresetTarget::AsymmetricOk || t == PresetTarget::SymmetricOnly);
  if (w4a4) {
    f.method = "gptaq";
    set.push_back("--method gptaq");
    if (!q.cae) {
      q.cae = true;
      set.push_back("--cae");
    }
    if (!given(vm, "grid")) {
      f.grid = "mse";
      set.push_back("--grid mse");
    }
  } else {
    if (!given(vm, "loaq")) {
      f.loaq.enabled = true;
      set.push_back("--loaq");
    }
    if (!given(vm, "grid")) {
      // Q4_1's free fp16 min has no integer zero point for stage 2 to refine.
      f.grid = free_min ? "minmax" : "two-stage";
      set.push_back("--grid " + f.grid);
    }
  }
  std::string note;
  if (!given(vm, "act-order")) {
    if (f.method == "rtn") {
      note = " (not --act-order: rtn has no column order)";
    } else {
      q.act_order = true;
      set.push_back("--act-order");
      // GGUF blocks are 32 consecutive inputs: groups fixed in column order
      // (two-stage grids are, by construction; a min-max grid needs it said).
      if (free_min && !given(vm, "static-groups") && q.group > 0) {
        q.static_groups = true;
        set.push_back("--static-groups");
      }
    }
  }
  if (!given(vm, "sym") && !given(vm, "asym")) {
    if (t == PresetTarget::AsymmetricOk) {
      f.asym = true;
      set.push_back("--asym");
    } else if (t == PresetTarget::SymmetricOnly) {
      note += " (symmetric: vLLM's Marlin kernels take symmetric GPTQ only)";
    }
  }
  if (w4a4 && f.learn_free) {
    f.preset_learn_sde = true;
    set.push_back(given(vm, "cl-lambda") ? "--learn sde" : "--learn sde --cl-lambda 0");
  }
  std::string line = "preset best:";
  for (const auto& s : set) line += " " + s;
  return line + note;
}

}  // namespace

const char* const kPresetHelp =
    "which defaults the method flags not given take: best (the default: what won the 3-seed quality tables on "
    "stories260K and SmolLM2-135M, bench/RESULTS.md \"Defaults\": --loaq --grid two-stage --act-order with "
    "--method gptq, and --asym where the format's fast kernels take asymmetric grids: the fake-quant output, "
    "compressed-tensors and streamq layer; --format gptq stays symmetric, because vLLM's Marlin kernels take "
    "symmetric 4/8-bit GPTQ only; --format gguf takes the --gguf-type's grid, and for Q4_1, whose free fp16 min "
    "stage 2 cannot refine, --grid minmax --static-groups; rtn gets no --act-order; with --abits below 16 and "
    "neither --method nor --loaq given, outside GGUF: --method gptaq --cae --grid mse --act-order and, in "
    "quantize, --learn sde --cl-lambda 0, the lowest measured W4A4 setting, at about 4x the time of the "
    "weight-only setting) or gptq-paper (the GPTQ "
    "paper's plain settings: every method flag at the default its help states, i.e. symmetric min-max grid, "
    "columns in order, no LoaQ). Flags given always win over the preset (e.g. --sym, --grid mse, or "
    "--preset gptq-paper --act-order); what the preset set is printed on stderr and every effective setting "
    "is in the report and the checkpoint's metadata";

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
      ("preset", po::value(&f.preset)->default_value("best"), kPresetHelp)
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
       "projections: linear-layer term; o_proj/down_proj: also the residual-stream term); combines with any "
       "method (set by --preset best)")
      ("loaq-alpha", po::value(&f.loaq.alpha)->default_value(0.5), "loaq: weight a of the linear-layer term (0..1)")
      ("loaq-beta", po::value(&f.loaq.beta)->default_value(0.5),
       "loaq: weight b of the sub-layer (residual) term for o_proj/down_proj (0..1)")
      ("loaq-norm", po::bool_switch(&f.loaq.norm),
       "loaq: approximate the RMS-normalized sub-layer outputs (rescale tokens by their output's RMS factor)")
      ("bits", po::value(&q.bits)->default_value(4), "weight bits: 2..8")
      ("group", po::value(&q.group)->default_value(-1), "input columns per scale group; -1 = one per output row")
      ("sym", po::bool_switch(&f.sym), "symmetric grid (the default of --preset gptq-paper and of --format gptq)")
      ("asym", po::bool_switch(&f.asym), "asymmetric grid with a zero point (set by --preset best where the format allows)")
      ("checkpoint-format", po::value(&f.checkpoint_format)->default_value("gptq"),
       "GPTQ checkpoint the grids must fit (see streamq export --help): gptq (classic layout that vLLM, "
       "transformers and gptqmodel load; stores zero - 1, so --asym zero points are kept >= 1 by widening the "
       "scale where min/max would give 0) or gptq_v2 (zero points stored as is, 0 allowed; read by gptqmodel "
       "and vLLM's gptq kernel, not by AutoGPTQ or older vLLM). Symmetric grids are identical in both")
      ("grid-style", po::value(&f.grid_style)->default_value("quarot"),
       "integer grid: quarot (signed symmetric range, as the GPTAQ/CAE code) or gptq (the original GPTQ's)")
      ("grid", po::value(&f.grid)->default_value("minmax"),
       "range per row/group (--preset best: two-stage): minmax, mse (GPTQ's search over shrink factors minimizing sum |q-x|^norm), or "
       "two-stage (two-stage paper: each group's scale searched to minimize its H-weighted error before the "
       "sweep, groups then fixed as with --static-groups; after the sweep, integers frozen, the scales refined "
       "by coordinate descent on ||W X~ - Q X||^2; works with every --method; collects the FP flow)")
      ("scale-refine-iters", po::value(&q.scale_refine_iters)->default_value(1),
       "two-stage: coordinate-descent passes over all group scales after the sweep (0: stage 1 only)")
      ("mse-grid", po::value(&q.mse_grid)->default_value(100), "mse: shrink factors are 1 - i/mse-grid")
      ("mse-max-shrink", po::value(&q.mse_max_shrink)->default_value(0.8), "mse: i < mse-max-shrink * mse-grid")
      ("mse-norm", po::value(&q.mse_norm)->default_value(2.4), "mse: exponent of the error")
      ("act-order", po::bool_switch(&q.act_order), "gptq: quantize columns by descending diag(H) (set by --preset best)")
      ("static-groups", po::bool_switch(&q.static_groups),
       "gptq: fix each group's grid up front in original column order (with --act-order keeps groups contiguous)")
      ("percdamp", po::value(&q.percdamp)->default_value(0.01), "gptq: damping, fraction of mean diag(H)")
      ("blocksize", po::value(&q.blocksize)->default_value(128), "gptq: lazy-batch block of columns");
}

std::string finish_method_flags(MethodFlags& f, const po::variables_map& vm, PresetTarget target) {
  if (f.sym && f.asym) throw InputError("--sym and --asym exclude each other");
  std::string preset_line;
  if (f.preset == "best") preset_line = apply_best_preset(f, vm, target);
  else if (f.preset != "gptq-paper") throw InputError("--preset '" + f.preset + "': expected best or gptq-paper");
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
  return preset_line;
}

void add_act_quant_flags(po::options_description& opts, ActQuantConfig* act, ActQuantConfig* kv) {
  opts.add_options()
      ("abits", po::value(&act->bits)->default_value(16),
       "activation bits: every linear's input fake-quantized per token with its own min-max grid at run time "
       "(QuaRot's quantizer), 2..16; 16 = off. eval: with a W4 fake-quant model and --abits 4 --kv-bits 4, "
       "W4A4KV4; quantize: the quantized flow calibrates on quantized activations (the FP flow does not), and "
       "--preset best picks its W4A4 setting (see --preset)")
      ("a-sym", po::bool_switch(&act->sym), "--abits: symmetric per-token grid (default asymmetric)")
      ("a-clip", po::value(&act->clip)->default_value(1.0),
       "--abits: clip ratio, each token's range scaled by it before the grid is made (1.0: min-max; QuaRot "
       "uses 0.9)")
      ("kv-bits", po::value(&kv->bits)->default_value(16),
       "KV-cache bits: keys (after RoPE) and values fake-quantized per token and head (group = head dim, "
       "asymmetric), 2..16; 16 = off")
      ("kv-clip", po::value(&kv->clip)->default_value(1.0), "--kv-bits: clip ratio (1.0: min-max)");
}

void finish_act_quant_flags(const po::variables_map& vm, const ActQuantConfig& act, const ActQuantConfig& kv) {
  act.validate("--abits");
  kv.validate("--kv-bits");
  // A grid parameter without its grid would be ignored (the rule of kFlagNeeds).
  if (!act.enabled() && (given(vm, "a-clip") || act.sym))
    throw InputError(std::string(given(vm, "a-clip") ? "--a-clip" : "--a-sym") +
                     " needs --abits below 16: without it the value would be ignored");
  if (!kv.enabled() && given(vm, "kv-clip"))
    throw InputError("--kv-clip needs --kv-bits below 16: without it the value would be ignored");
}

void add_rotation_flags(po::options_description& opts, RotationFlags* f, RotationUse use) {
  const bool q = use == RotationUse::Quantize;
  const std::string head_help =
      std::string("QuaRot's head rotations: R2, each value head and o_proj's columns of each attention head rotated "
                  "by the Hadamard transform of head_dim (offline, in the weights: the values, hence the V cache, "
                  "rotated), and R3, queries and keys rotated per head after RoPE in the forward (q k^T unchanged: "
                  "only a quantized K cache sees it). head_dim must be 2^k or m 2^k with a known order m. ") +
      (q ? "Stock loaders serve the outputs (R2 is in the weights; R3 changes nothing without KV quantization); "
           "streamq eval applies R3 from config.json"
         : "A checkpoint quantize --head-hadamard wrote gets R3 without this flag");
  opts.add_options()
      ("rotate", po::value(&f->rotate)->default_value("none"),
       q ? "none, hadamard or random: quantize the model with its residual stream rotated (QuaRot's R1): norms "
           "folded into the linears that read them, then an orthogonal matrix fused into the embedding, every "
           "block as it loads and the head, so the FP model computes the same logits and 2-bit weights and "
           "4-bit activations lose far less. hadamard: a randomized Hadamard matrix (fast; the hidden size must "
           "be 2^k or m 2^k with a known Hadamard order m: every Llama, Mistral, Qwen and SmolLM2 size); "
           "random: a Haar-random orthogonal matrix of any size. The outputs hold the rotated weights (norms 1, "
           "a tied head untied) and say so in config.json (streamq_rotation): stock loaders (transformers, "
           "vLLM, llama.cpp) serve an offline-rotated model as it is"
         : "none, hadamard or random: evaluate the model with its residual stream rotated by an orthogonal "
           "matrix fused into the weights (QuaRot's offline rotation: norms folded into the linears that read "
           "them, embedding, every block and the head rotated as they load). hadamard: a randomized Hadamard "
           "matrix (fast; the hidden size must be 2^k or m 2^k with a known Hadamard order m); random: a "
           "Haar-random orthogonal matrix of any size (dense, O(hidden^2) per token). Without "
           "--abits/--kv-bits the perplexity moves by float rounding only; with them the quantized "
           "activations are those of the rotated stream. A checkpoint quantize --rotate wrote is already "
           "rotated: evaluate it without --rotate")
      ("rotate-seed", po::value(&f->spec.seed)->default_value(0),
       "--rotate hadamard: the random signs' seed; --rotate random: the matrix's seed")
      ("online-hadamard", po::bool_switch(&f->spec.online_hadamard),
       q ? "QuaRot's online Hadamards: before down_proj (R4; the Hadamard transform of the intermediate size) "
           "and before o_proj (the transform of the full attention width heads x head_dim, in place of "
           "QuaRot's Hadamard across heads, which needs an order of num_heads): each weight rotated on its "
           "input side, its input by the same in every forward (calibration included, before --abits quantizes it); both sizes must "
           "be 2^k or m 2^k with a known order m. No stock loader applies the activation sides, so only "
           "--format fake can hold them (streamq eval applies them, reading config.json's streamq_rotation); "
           "for GPTQ, compressed-tensors or GGUF use --rotate alone"
         : "QuaRot's online Hadamards: down_proj's input rotated by the Hadamard transform of the "
           "intermediate size (R4) and o_proj's input by that of heads x head_dim in every forward (before "
           "--abits quantizes them), the two weights by the same as each block loads; both sizes must be 2^k "
           "or m 2^k with a known Hadamard order m. Works with or without --rotate; without --abits the "
           "perplexity moves by float rounding only. A checkpoint quantize --online-hadamard wrote gets the "
           "forward's halves its config.json names without this flag")
      ("head-hadamard", po::bool_switch(&f->spec.head_hadamard), head_help.c_str());
}

void finish_rotation_flags(const po::variables_map& vm, RotationFlags* f) {
  f->spec.kind = parse_rotation_kind(f->rotate, "--rotate");
  f->spec.online_hadamard_o_proj = f->spec.online_hadamard;  // QuaRot's online Hadamards come together
  if (f->spec.kind == RotationSpec::Kind::None && given(vm, "rotate-seed"))
    throw InputError("--rotate-seed needs --rotate hadamard or random: without it the value would be ignored");
}

}  // namespace streamq::cli
