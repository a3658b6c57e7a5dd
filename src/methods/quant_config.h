// What a weight quantizer is asked to do: bit width, grouping, grid, clip
// search, GPTQ's options. One struct shared by every method.
#pragma once

#include <cstdint>
#include <string>

namespace streamq {

// Integer grid conventions (see shared METHODS-NOTES): QuaRot's (used by the
// GPTAQ/CAE released code; symmetric integers in [-2^(b-1), 2^(b-1)-1]) and the
// original GPTQ's (symmetric uses [0, 2^b-1] with zero 2^(b-1)).
enum class GridStyle { Quarot, Gptq };
// How each row's range is chosen: min/max, GPTQ's MSE search over shrink
// factors, or the two-stage group-scale optimization (two_stage.h: an
// H-weighted scale search before the sweep, coordinate descent on the scales
// with the integers frozen after it).
enum class ClipSearch { MinMax, Mse, TwoStage };
enum class MethodKind { Rtn, Gptq, Gptaq };
// exact: the mathematically exact, block-size-invariant update. official: the
// released code's shortcuts (quantized values in the cross-block P1/P2 terms,
// group grids from the block-start weights), to reproduce the papers' tables.
enum class Variant { Exact, Official };
// Which product P2 (the compensation-aware term) is built from under GPTQ+CAE:
// X X^T (the paper's Algorithm 2 with dX = 0) or X~ X^T.
enum class CaeSource { Xx, Xfx };
// The GPTQ checkpoint layout the grids must be storable in (docs/gptq-format.md).
// Gptq (the classic "v1" layout vLLM, transformers and every GPTQ loader read)
// stores zero - 1 in an unsigned field, so asymmetric zero points are kept in
// [1, 2^bits - 1]; GptqV2 (read by gptqmodel, and by vLLM's gptq kernel when
// checkpoint_format says so) stores the zero as is, so 0 is allowed.
enum class CheckpointFormat { Gptq, GptqV2 };

struct QuantConfig {
  MethodKind method = MethodKind::Gptq;
  int bits = 4;
  int64_t group = -1;  // -1: one grid per output row (per channel)
  bool sym = true;
  GridStyle grid_style = GridStyle::Quarot;
  ClipSearch clip = ClipSearch::MinMax;
  int mse_grid = 100;          // shrink factors p = 1 - i/mse_grid ...
  double mse_max_shrink = 0.8; // ... for i < mse_max_shrink * mse_grid
  double mse_norm = 2.4;       // error = sum |q - x|^mse_norm
  bool act_order = false;      // process columns by descending diag(H)
  bool static_groups = false;  // group grids fixed up front in original column order
  CheckpointFormat checkpoint_format = CheckpointFormat::Gptq;  // constrains asymmetric zero points
  // Free-min grid (GGUF Q4_1): x = scale * code + min with scale and min free
  // fp16 values (no integer zero point; grid.h). Asymmetric only.
  bool free_min = false;
  double percdamp = 0.01;      // damping = percdamp * mean(diag H)
  int64_t blocksize = 128;     // lazy-batch block of columns
  int max_damp_retries = 6;    // Cholesky failures: damping x10 each retry
  // GPTAQ / CAE (compensation paper): P1 from dX X^T scaled by gptaq_alpha,
  // P2 from X~ X^T (or X X^T) scaled by cae_alpha. Released defaults are 0.25;
  // 1 is the papers' math.
  double gptaq_alpha = 0.25;
  bool cae = false;
  double cae_alpha = 0.25;
  CaeSource cae_source = CaeSource::Xx;
  bool p1_original = false;  // P1 term uses the original w0 instead of the compensated w
  Variant variant = Variant::Exact;
  // --- two-stage group scales (clip == TwoStage; see src/methods/two_stage.h) ---
  // Stage 1 candidates: s = beta * s_minmax for beta = 1 -/+ i * scale_beta_step
  // over [scale_beta_min, scale_beta_max] (beta = 1, min-max, always included).
  double scale_beta_step = 0.005;
  double scale_beta_min = 0.5;
  double scale_beta_max = 1.2;
  int scale_refine_iters = 1;  // stage 2: coordinate-descent passes over all groups
  // --- end two-stage ---

  bool two_stage() const { return clip == ClipSearch::TwoStage; }
  // Whether the input statistics must include the FP flow's cross term dX X^T.
  // Two-stage's scale refinement aims at the FP output W X~ with every method.
  bool needs_fp_flow() const {
    return method == MethodKind::Gptaq || (cae && cae_source == CaeSource::Xfx) || two_stage();
  }

  // Throws InputError naming the offending flag when a value is out of range.
  void validate() const;
  // Stable human/JSON description, e.g. "gptq w4 g32 sym quarot minmax".
  std::string describe() const;
};

const char* to_string(GridStyle s);
const char* to_string(ClipSearch c);
const char* to_string(MethodKind m);
const char* to_string(Variant v);
const char* to_string(CaeSource s);
const char* to_string(CheckpointFormat f);  // "gptq" or "gptq_v2", as config.json spells it

}  // namespace streamq
