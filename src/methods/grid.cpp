// Grid fitting: min/max (QuaRot or GPTQ convention) and GPTQ's MSE shrink search.
#include "src/methods/grid.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "src/core/dtype.h"
#include "src/methods/grid_mse_avx2.h"

namespace streamq {

// Here, not in grid_mse_avx2.cpp: that file is built with -mavx2, and the
// check must run on any x86-64.
bool grid_mse_avx2::available() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");  // the CPU's, fixed
  return ok;
}

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

namespace {

// The vector sums' error bound (grid_mse_avx2.h), relative and absolute,
// against the exact loop's sum S of glibc's double pow. Each term |e|^norm:
//  - e rounded to float: relative 2^-24, norm x that after the power;
//  - the power taken to norm rounded to float: a factor exp((norm_f - norm)
//    ln e), |ln e| <= 88.8 over float's normal range;
//  - SLEEF's powf: 1 ulp, 2^-23 relative where the result is normal, 2^-149
//    absolute where it is not; an e below float's normal range (2^-126) has
//    both terms under 2^-126 (norm >= 1), hence the absolute 2^-124 a term;
//  - the sums: n terms in double, each sum within n 2^-53 of its terms' real
//    sum, and glibc's pow within 1 ulp (2^-52).
// The relative part is taken 1.5 times over, the absolute one twice.
struct MseBound {
  double rel = 0, abs = 0;
};
MseBound mse_bound(double norm, int64_t len) {
  const double norm_f = static_cast<float>(norm);
  const double term = std::expm1(88.8 * std::fabs(norm_f - norm)) + norm * 0x1p-24 + 0x1p-22;
  return {1.5 * term + static_cast<double>(2 * len + 8) * 0x1p-53, static_cast<double>(len) * 0x1p-124};
}

}  // namespace

GridParams Grid::fit(const double* x, int64_t len, int64_t stride, MseSearchCounts* counts) const {
  return fit_impl(x, len, stride, counts, true);
}

GridParams Grid::fit_exact(const double* x, int64_t len, int64_t stride) const {
  return fit_impl(x, len, stride, nullptr, false);
}

GridParams Grid::fit_impl(const double* x, int64_t len, int64_t stride, MseSearchCounts* counts, bool screen) const {
  double xmin = 0, xmax = 0;
  if (cfg_.free_min && len > 0) xmin = xmax = x[0];  // the row's own range
  for (int64_t i = 0; i < len; ++i) {
    xmin = std::min(xmin, x[i * stride]);
    xmax = std::max(xmax, x[i * stride]);
  }
  const auto range = [&](double lo, double hi) { return cfg_.free_min ? from_range_free_min(lo, hi) : from_range(lo, hi); };
  if (cfg_.clip == ClipSearch::MinMax) return range(xmin, xmax);

  // MSE clip search (GPTQ's find_params): shrink the range by p = 1 - i/grid and
  // keep the first strict minimum of sum |q - x|^norm.
  if (cfg_.sym) {
    // Both conventions symmetrize the range before shrinking it.
    const double amax = std::max(-xmin, xmax);
    xmax = amax;
    xmin = xmin < 0 ? -amax : 0.0;
  }
  const int steps = static_cast<int>(cfg_.mse_max_shrink * cfg_.mse_grid);
  const auto candidate = [&](int i) {
    const double shrink = 1.0 - static_cast<double>(i) / cfg_.mse_grid;
    return range(shrink * xmin, shrink * xmax);
  };
  // A candidate's exact sum stops once it reaches `stop`: adding non-negative
  // doubles never lowers a sum (round to nearest is monotone), so it could
  // not be a strict minimum; the choice is the full search's bit for bit
  // (tested against it).
  const auto exact_err = [&](const GridParams& p, double stop) {
    double err = 0;
    for (int64_t k = 0; k < len && err < stop; ++k) {
      const double v = x[k * stride];
      err += std::pow(std::fabs(quantize(v, p) - v), cfg_.mse_norm);
    }
    return err;
  };
  GridParams best = range(xmin, xmax);
  double best_err = std::numeric_limits<double>::infinity();

  // The fast path: every candidate's sum from float32 powers (grid_mse_avx2),
  // each within MseBound of its exact sum. A candidate whose lower bound is
  // above the least upper bound cannot be the minimum and is ruled out; a
  // candidate equal to the one before it has the same sum and cannot be a
  // strict minimum. The survivors (one, nearly always) are then searched
  // exactly as below, in order, so the pick is the exact search's, whatever
  // the approximations were. Rows with values beyond 2^40, norms outside
  // [1, 4] and non-finite sums take the exact search only.
  const double amax = std::max(-xmin, xmax);
  if (screen && stride == 1 && len >= 8 && steps > 1 && amax <= 0x1p40 && cfg_.mse_norm >= 1 && cfg_.mse_norm <= 4 &&
      grid_mse_avx2::available()) {
    const MseBound b = mse_bound(cfg_.mse_norm, len);
    const auto norm_f = static_cast<float>(cfg_.mse_norm);
    std::vector<GridParams> ps(static_cast<size_t>(steps));
    std::vector<double> lower(static_cast<size_t>(steps), std::numeric_limits<double>::infinity());
    double least_upper = std::numeric_limits<double>::infinity();
    bool finite = true;
    for (int i = 0; i < steps; ++i) ps[i] = candidate(i);
    // Every 8th candidate first: a near-best sum early lets most of the
    // others stop after a part of the row (the order changes nothing else).
    std::vector<int> order;
    order.reserve(static_cast<size_t>(steps));
    for (int i = 0; i < steps; i += 8) order.push_back(i);
    for (int i = 0; i < steps; ++i)
      if (i % 8 != 0) order.push_back(i);
    for (const int i : order) {
      if (!finite) break;
      if (i > 0 && ps[i].scale == ps[i - 1].scale && ps[i].zero == ps[i - 1].zero) continue;
      // Past `stop` the partial sum's lower bound is already above the least upper bound.
      const double stop = (least_upper + b.abs) * (1 + 2 * b.rel);
      const double a = grid_mse_avx2::approx_err_sum(x, len, ps[i].scale, ps[i].zero, maxq_, cfg_.free_min, norm_f, stop);
      if (!(a <= std::numeric_limits<double>::max())) finite = false;
      if (!finite || a > stop) continue;
      lower[i] = a * (1 - b.rel) - b.abs;
      least_upper = std::min(least_upper, a * (1 + b.rel) + b.abs);
    }
    if (finite) {
      if (counts) ++counts->vector_rows;
      int survivors = 0, last = 0;
      for (int i = 0; i < steps; ++i)
        if (lower[i] <= least_upper) {
          ++survivors;
          last = i;
        }
      if (survivors == 1) return ps[last];
      if (counts) counts->exact_candidates += survivors;
      for (int i = 0; i < steps; ++i) {
        if (!(lower[i] <= least_upper)) continue;
        const double err = exact_err(ps[i], best_err);
        if (err < best_err) {
          best_err = err;
          best = ps[i];
        }
      }
      return best;
    }
  }

  for (int i = 0; i < steps; ++i) {
    const GridParams p = candidate(i);
    const double err = exact_err(p, best_err);
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

}  // namespace streamq
