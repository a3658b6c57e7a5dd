// Validation and description of QuantConfig.
#include "src/methods/quant_config.h"

#include <sstream>

#include "src/core/error.h"

namespace streamq {

const char* to_string(GridStyle s) { return s == GridStyle::Quarot ? "quarot" : "gptq"; }
const char* to_string(ClipSearch c) {
  return c == ClipSearch::MinMax ? "minmax" : (c == ClipSearch::Mse ? "mse" : "two-stage");
}
const char* to_string(MethodKind m) {
  return m == MethodKind::Rtn ? "rtn" : (m == MethodKind::Gptq ? "gptq" : "gptaq");
}
const char* to_string(Variant v) { return v == Variant::Exact ? "exact" : "official"; }
const char* to_string(CaeSource s) { return s == CaeSource::Xx ? "xx" : "xfx"; }
const char* to_string(CheckpointFormat f) { return f == CheckpointFormat::Gptq ? "gptq" : "gptq_v2"; }

void QuantConfig::validate() const {
  if (bits < 2 || bits > 8) throw InputError("--bits " + std::to_string(bits) + ": must be 2..8");
  if (group == 0 || group < -1)
    throw InputError("--group " + std::to_string(group) + ": must be -1 (per channel) or positive");
  if (percdamp < 0) throw InputError("--percdamp must be >= 0");
  if (blocksize < 1) throw InputError("--blocksize must be >= 1");
  if (static_groups && group < 0) throw InputError("--static-groups needs --group > 0");
  if (cae && method == MethodKind::Rtn)
    throw InputError("--cae needs a compensating method (--method gptq or gptaq), not rtn");
  if (gptaq_alpha < 0) throw InputError("--gptaq-alpha must be >= 0");
  if (cae_alpha < 0) throw InputError("--cae-alpha must be >= 0");
  if (p1_original && method != MethodKind::Gptaq) throw InputError("--p1-original applies to --method gptaq only");
  if (clip == ClipSearch::Mse) {
    if (mse_grid < 1) throw InputError("--mse-grid must be >= 1");
    if (mse_max_shrink <= 0 || mse_max_shrink > 1) throw InputError("--mse-max-shrink must be in (0, 1]");
    if (mse_norm <= 0) throw InputError("--mse-norm must be > 0");
  }
  if (free_min) {
    if (sym) throw InputError("a free-min grid (--gguf-type Q4_1) is asymmetric: --sym does not apply");
    if (two_stage())
      throw InputError("--grid two-stage refines integer zero-point grids; a free-min grid (--gguf-type Q4_1) needs "
                       "--grid minmax or mse");
    if (variant == Variant::Official)
      throw InputError("--variant official clamps to integer zero-point grids; a free-min grid (--gguf-type Q4_1) "
                       "needs --variant exact");
  }
  if (two_stage()) {
    if (scale_refine_iters < 0) throw InputError("--scale-refine-iters must be >= 0");
    if (!(scale_beta_step > 0)) throw InputError("two-stage: scale_beta_step must be > 0");
    if (!(scale_beta_min > 0 && scale_beta_min <= 1 && scale_beta_max >= 1))
      throw InputError("two-stage: candidate range must satisfy 0 < scale_beta_min <= 1 <= scale_beta_max");
  }
}

std::string QuantConfig::describe() const {
  std::ostringstream s;
  s << to_string(method) << " w" << bits << " " << (group < 0 ? std::string("per-channel") : "g" + std::to_string(group))
    << " " << (sym ? "sym" : "asym") << " grid-style=" << to_string(grid_style) << " clip=" << to_string(clip);
  if (method != MethodKind::Rtn) {
    s << " percdamp=" << percdamp << " blocksize=" << blocksize << " variant=" << to_string(variant);
    if (method == MethodKind::Gptaq) s << " gptaq-alpha=" << gptaq_alpha << (p1_original ? " p1-original" : "");
    if (cae) s << " cae-alpha=" << cae_alpha << " cae-source=" << to_string(cae_source);
    if (act_order) s << " act-order";
    if (static_groups) s << " static-groups";
  }
  if (two_stage()) s << " scale-refine-iters=" << scale_refine_iters;
  // Only the non-default spelling: the zero convention matters for asymmetric grids.
  if (!sym && checkpoint_format != CheckpointFormat::Gptq && !free_min)
    s << " checkpoint-format=" << to_string(checkpoint_format);
  if (free_min) s << " free-min";
  return s.str();
}

}  // namespace streamq
