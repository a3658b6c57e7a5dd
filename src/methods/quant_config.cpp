// Validation and description of QuantConfig.
#include "methods/quant_config.h"

#include <sstream>

#include "core/error.h"

namespace streamq {

const char* to_string(GridStyle s) { return s == GridStyle::Quarot ? "quarot" : "gptq"; }
const char* to_string(ClipSearch c) { return c == ClipSearch::MinMax ? "minmax" : "mse"; }
const char* to_string(MethodKind m) { return m == MethodKind::Rtn ? "rtn" : "gptq"; }

void QuantConfig::validate() const {
  if (bits < 2 || bits > 8) throw InputError("--bits " + std::to_string(bits) + ": must be 2..8");
  if (group == 0 || group < -1)
    throw InputError("--group " + std::to_string(group) + ": must be -1 (per channel) or positive");
  if (percdamp < 0) throw InputError("--percdamp must be >= 0");
  if (blocksize < 1) throw InputError("--blocksize must be >= 1");
  if (static_groups && group < 0) throw InputError("--static-groups needs --group > 0");
  if (clip == ClipSearch::Mse) {
    if (mse_grid < 1) throw InputError("--mse-grid must be >= 1");
    if (mse_max_shrink <= 0 || mse_max_shrink > 1) throw InputError("--mse-max-shrink must be in (0, 1]");
    if (mse_norm <= 0) throw InputError("--mse-norm must be > 0");
  }
}

std::string QuantConfig::describe() const {
  std::ostringstream s;
  s << to_string(method) << " w" << bits << " " << (group < 0 ? std::string("per-channel") : "g" + std::to_string(group))
    << " " << (sym ? "sym" : "asym") << " grid-style=" << to_string(grid_style) << " clip=" << to_string(clip);
  if (method == MethodKind::Gptq) {
    s << " percdamp=" << percdamp << " blocksize=" << blocksize;
    if (act_order) s << " act-order";
    if (static_groups) s << " static-groups";
  }
  return s.str();
}

}  // namespace streamq
