// Uniform integer grids: per-row (or per-group) scale and zero point, codes in
// [0, 2^bits - 1], dequantized value s * (code - zero). Both grid styles and the
// MSE clip search reduce to this one representation. Every scale is an fp16
// value (GPTQ checkpoints store fp16 scales, so the sweep optimizes the grid a
// loader will see), and asymmetric zero points honour cfg.checkpoint_format.
// Free-min grids (cfg.free_min, GGUF Q4_1) are x = scale * code + min with a
// free fp16 min instead of an integer zero point; GridParams::zero holds it.
#pragma once

#include <cstdint>

#include "src/methods/quant_config.h"

namespace streamq {

struct GridParams {
  double scale = 1.0;
  double zero = 0.0;  // an integer value; for free-min grids the fp16 min (x = scale * code + zero)
};

// The nearest positive finite fp16 value to s (s > 0 expected): tiny scales
// become the smallest fp16 subnormal rather than 0, huge ones the largest
// finite fp16. Exactly representable in float32 and float64.
double round_scale_fp16(double s);
// The nearest finite fp16 value to v, either sign (saturating at +-65504):
// the min of a free-min grid.
double round_fp16(double v);

// What Grid::fit's MSE search did, for tests and benches: rows whose
// candidates the vector bound screened, and candidates it then had to sum
// exactly (none where one candidate survived).
struct MseSearchCounts {
  int64_t vector_rows = 0, exact_candidates = 0;
};

class Grid {
 public:
  explicit Grid(const QuantConfig& cfg);
  // Parameters for the values x[0], x[stride], ..., x[(len-1)*stride] (one
  // row of a group), honouring the grid style, symmetry and clip search.
  GridParams fit(const double* x, int64_t len, int64_t stride = 1, MseSearchCounts* counts = nullptr) const;
  // The MSE search without the vector screen (every candidate summed with
  // glibc's pow): the same pick, the reference fit is benchmarked against.
  GridParams fit_exact(const double* x, int64_t len, int64_t stride = 1) const;
  int32_t code(double x, const GridParams& p) const;
  double dequant(int32_t code, const GridParams& p) const {
    // fp16 scale * code + fp16 min is exact in double (both within 2^-24 ..
    // 2^16 with 11-bit mantissas), so rounding it to float32 gives ggml's
    // float32 dequantization (exact product, one rounded sum) bit for bit.
    return cfg_.free_min ? p.scale * code + p.zero : p.scale * (code - p.zero);
  }
  double quantize(double x, const GridParams& p) const { return dequant(code(x, p), p); }
  int32_t maxq() const { return maxq_; }

 private:
  GridParams fit_impl(const double* x, int64_t len, int64_t stride, MseSearchCounts* counts, bool screen) const;
  GridParams from_range(double xmin, double xmax) const;
  GridParams from_range_free_min(double xmin, double xmax) const;
  // The style's scale (and symmetric zero) before fp16 rounding.
  GridParams from_range_unrounded(double xmin, double xmax) const;
  QuantConfig cfg_;
  int32_t maxq_;
};

}  // namespace streamq
