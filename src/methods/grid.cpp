// Grid fitting: min/max (QuaRot or GPTQ convention) and GPTQ's MSE shrink search.
#include "src/methods/grid.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "src/core/dtype.h"

namespace streamq {

double round_scale_fp16(double s) {
  constexpr double kMinSubnormal = 5.9604644775390625e-08;  // 2^-24
  constexpr double kMaxFinite = 65504.0;
  if (!(s > kMinSubnormal)) return kMinSubnormal;  // also NaN: never a zero or non-finite scale
  if (s >= kMaxFinite) return kMaxFinite;
  // Through float, then the neighbour on s's side is checked: rounding
  // double -> float first can cross an fp16 midpoint. Nearest matters: the
  // two-stage descent relies on the nearest fp16 value to a minimizer being
  // no worse than the previous scale.
  const uint16_t h = f32_to_f16(static_cast<float>(s));
  const double v = f16_to_f32(h);
  const double other = f16_to_f32(static_cast<uint16_t>(v < s ? h + 1 : h - 1));
  return std::fabs(other - s) < std::fabs(v - s) ? other : v;
}

double round_fp16(double v) {
  constexpr double kMaxFinite = 65504.0;
  const double a = std::fabs(v);
  if (a >= kMaxFinite) return std::copysign(kMaxFinite, v);
  if (!(a == a)) return 0.0;  // NaN: no finite nearest value; callers never pass one
  const uint16_t h = f32_to_f16(static_cast<float>(a));  // magnitudes: bit patterns are monotone
  const double near = f16_to_f32(h);
  const double other = near < a ? f16_to_f32(static_cast<uint16_t>(h + 1))
                                 : (h == 0 ? near : f16_to_f32(static_cast<uint16_t>(h - 1)));
  return std::copysign(std::fabs(other - a) < std::fabs(near - a) ? other : near, v);
}

Grid::Grid(const QuantConfig& cfg) : cfg_(cfg), maxq_((1 << cfg.bits) - 1) {}

// Round half to even, as torch.round does (the default FP rounding mode).
static double round_even(double v) { return std::nearbyint(v); }

int32_t Grid::code(double x, const GridParams& p) const {
  const double c = cfg_.free_min ? round_even((x - p.zero) / p.scale) : round_even(x / p.scale) + p.zero;
  return static_cast<int32_t>(std::clamp(c, 0.0, static_cast<double>(maxq_)));
}

// xmin <= 0 <= xmax already (row ranges always include 0).
GridParams Grid::from_range(double xmin, double xmax) const {
  if (cfg_.grid_style == GridStyle::Gptq && xmin == 0 && xmax == 0) {
    xmin = -1;  // GPTQ's grid for an all-zero row
    xmax = 1;
  }
  GridParams p = from_range_unrounded(xmin, xmax);
  p.scale = round_scale_fp16(p.scale);
  if (cfg_.sym) return p;
  // The zero point from the fp16 scale; the classic GPTQ checkpoint stores
  // zero - 1 in an unsigned field, so it cannot hold a zero point of 0. Zero 0
  // arises when the range barely reaches below 0 (-xmin < scale / 2); zero 1
  // then covers [-scale, (maxq - 1) scale], so the scale widens to keep xmax
  // on the grid (-xmin < scale / 2 stays covered).
  const int32_t lo = cfg_.checkpoint_format == CheckpointFormat::Gptq ? 1 : 0;
  p.zero = std::clamp(round_even(-xmin / p.scale), 0.0, static_cast<double>(maxq_));
  if (p.zero < lo) {
    p.zero = lo;
    p.scale = round_scale_fp16(std::max(p.scale, xmax / (maxq_ - lo)));
  }
  return p;
}

// Free-min grid (GGUF Q4_1, ggml's quantize_row_q4_1_ref): min = fp16(xmin),
// scale = fp16((xmax - min) / maxq), both rounded before any code is chosen.
// The range is the row's own [xmin, xmax], not widened to include 0.
GridParams Grid::from_range_free_min(double xmin, double xmax) const {
  GridParams p;
  p.zero = round_fp16(xmin);
  p.scale = round_scale_fp16((xmax - p.zero) / maxq_);
  return p;
}

GridParams Grid::from_range_unrounded(double xmin, double xmax) const {
  GridParams p;
  const double half = static_cast<double>(1 << (cfg_.bits - 1));
  if (cfg_.grid_style == GridStyle::Quarot) {
    if (cfg_.sym) {
      // Integers [-2^(b-1), 2^(b-1)-1] are codes [0, maxq] with zero 2^(b-1).
      const double amax = std::max(std::max(-xmin, xmax), 1e-5);
      p.scale = amax / (half - 1);
      p.zero = half;
    } else {
      p.scale = std::max(xmax - xmin, 1e-5) / maxq_;
    }
    return p;
  }
  // Original GPTQ grid.
  if (cfg_.sym) {
    xmax = std::max(-xmin, xmax);
    if (xmin < 0) xmin = -xmax;
  }
  p.scale = (xmax - xmin) / maxq_;  // from_range replaced an all-zero range by [-1, 1]
  if (cfg_.sym) p.zero = (maxq_ + 1) / 2;
  return p;
}

GridParams Grid::fit(const double* x, int64_t len, int64_t stride) const {
  double xmin = 0, xmax = 0;
  if (cfg_.free_min && len > 0) xmin = xmax = x[0];  // the row's own range
  for (int64_t i = 0; i < len; ++i) {
    xmin = std::min(xmin, x[i * stride]);
    xmax = std::max(xmax, x[i * stride]);
  }
  const auto range = [&](double lo, double hi) { return cfg_.free_min ? from_range_free_min(lo, hi) : from_range(lo, hi); };
  if (cfg_.clip == ClipSearch::MinMax) return range(xmin, xmax);

  // MSE clip search (GPTQ's find_params): shrink the range by p = 1 - i/grid and
  // keep the first strict minimum of sum |q - x|^norm. A candidate's sum
  // stops once it reaches the best so far: adding non-negative doubles never
  // lowers a sum (round to nearest is monotone), so it could not be a strict
  // minimum; the choice is the full search's bit for bit (tested against it),
  // at about half the pow calls, which dominate an MSE-grid job's time.
  if (cfg_.sym) {
    // Both conventions symmetrize the range before shrinking it.
    const double amax = std::max(-xmin, xmax);
    xmax = amax;
    xmin = xmin < 0 ? -amax : 0.0;
  }
  GridParams best = range(xmin, xmax);
  double best_err = std::numeric_limits<double>::infinity();
  const int steps = static_cast<int>(cfg_.mse_max_shrink * cfg_.mse_grid);
  for (int i = 0; i < steps; ++i) {
    const double shrink = 1.0 - static_cast<double>(i) / cfg_.mse_grid;
    const GridParams p = range(shrink * xmin, shrink * xmax);
    double err = 0;
    for (int64_t k = 0; k < len && err < best_err; ++k) {
      const double v = x[k * stride];
      err += std::pow(std::fabs(quantize(v, p) - v), cfg_.mse_norm);
    }
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

}  // namespace streamq
