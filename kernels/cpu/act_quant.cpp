// Per-row dynamic fake quantization (QuaRot's activation / KV quantizer).
#include "kernels/cpu/act_quant.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "src/core/error.h"

namespace streamq {

void ActQuantConfig::validate(const std::string& flag) const {
  if (bits < 2 || bits > 16) throw InputError(flag + " " + std::to_string(bits) + ": must be 2..16 (16 = off)");
  if (!(clip > 0 && clip <= 1))
    throw InputError(flag + ": clip ratio " + std::to_string(clip) + " must be in (0, 1]");
}

void fake_quant_rows(float* x, int64_t rows, int64_t width, const ActQuantConfig& c, const std::string& what) {
  if (!c.enabled() || rows <= 0 || width <= 0) return;
  tbb::parallel_for(int64_t{0}, rows, [&](int64_t r) {
    float* row = x + r * width;
    double lo = 0, hi = 0;  // min(row, 0) and max(row, 0)
    for (int64_t i = 0; i < width; ++i) {
      const double v = row[i];
      if (!std::isfinite(v))
        throw InputError(what + ": row " + std::to_string(r) + " holds a non-finite value (" + std::to_string(v) +
                         "); cannot quantize it");
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    lo *= c.clip;
    hi *= c.clip;
    if (c.sym) {
      const double maxq = std::ldexp(1.0, c.bits - 1) - 1, m = std::max(-lo, hi);
      const double scale = m > 0 ? m / maxq : 1.0;
      for (int64_t i = 0; i < width; ++i) {
        const double q = std::clamp(std::round(row[i] / scale), -maxq - 1, maxq);
        row[i] = static_cast<float>(scale * q);
      }
    } else {
      if (lo == 0 && hi == 0) {
        lo = -1;
        hi = 1;
      }
      const double maxq = std::ldexp(1.0, c.bits) - 1, scale = (hi - lo) / maxq, zero = std::round(-lo / scale);
      for (int64_t i = 0; i < width; ++i) {
        const double q = std::clamp(std::round(row[i] / scale) + zero, 0.0, maxq);
        row[i] = static_cast<float>(scale * (q - zero));
      }
    }
  });
}

}  // namespace streamq
