// Two-stage group-scale optimization (two-stage paper, Sec. 3, Algorithm 1):
// stage 1 picks each group's grid by an H-weighted scale search before the
// sweep; stage 2, after the sweep, freezes the integers and refines the group
// scales by coordinate descent on the layer objective against the FP output.
// Works around any sweep (RTN, GPTQ, GPTAQ, CAE): the sweep only has to
// quantize with the stage-1 grids held fixed, as static groups.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "src/methods/quant_config.h"
#include "src/methods/quant_result.h"

namespace streamq {

class Backend;

// Stage 1. For each row and group (original column order: columns
// [gi*g, (gi+1)*g), or the whole row per channel) picks, among the grids of
// the ranges beta * [min, max] (beta = 1 - i * cfg.scale_beta_step down to
// scale_beta_min and 1 + i * step up to scale_beta_max; beta = 1 is min-max),
// the one minimizing (s c - w)^T H_gg (s c - w) with c = code - zero, H_gg the
// group's diagonal block of the undamped H (per channel: diag(H) only).
// w[m, n]: the weights with dead inputs zeroed. Writes r.scales and r.zeros
// ([ngroups, m]); r must already have its layout (rows, cols, ngroups).
void two_stage_init_grids(const double* w, int64_t m, int64_t n, const std::vector<double>& h,
                          const QuantConfig& cfg, QuantResult& r);

// Stage 2 hook: called after every coordinate step, a step not taken
// included (zero curvature, or a target scale outside the positive fp16
// range), and once per row before the first, with the row and its current
// dequantized values (original order): iters x groups + 1 calls per row.
// Called concurrently for different rows, never for one row at once.
using ScaleStepHook = std::function<void(int64_t row, const double* q_row)>;

// Stage 2. Codes and zeros frozen; cfg.scale_refine_iters passes of
// coordinate descent over every group of every row, each step the exact
// minimizer over one scale of
//   L(s) = ||w^T X~ - q^T X||^2 = (q-w)^T H (q-w) - 2 w^T C (q-w) + const,
// C = dX X^T = LinearStats::cross() (the paper's R = E[(X - X~) X^T] = -C).
// w[m, n]: the target the sweep started from (original weights, dead inputs
// zeroed), original order; h: undamped H; cross: C with h's scale, or null
// (no FP flow: C = 0). Groups are read from r.g_idx (contiguous column
// ranges, as every streamq result has them); updates r.scales and
// r.dequant. Every updated scale is rounded to the nearest fp16 value (the
// exact minimizer's neighbour on the fp16 grid), as every streamq grid is.
// Deterministic (rows in parallel, each row sequential).
void two_stage_refine_scales(Backend& backend, const double* w, const std::vector<double>& h,
                             const std::vector<double>* cross, const QuantConfig& cfg, QuantResult& r,
                             const ScaleStepHook* hook = nullptr);

// RTN on two-stage grids: stage 1, round to nearest, stage 2. Dead inputs
// (diag(H) == 0) are zeroed first, as the GPTQ sweep does.
QuantResult two_stage_rtn_quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                                   const std::vector<double>& h, const std::vector<double>* cross,
                                   const QuantConfig& cfg);

}  // namespace streamq
