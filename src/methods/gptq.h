// The GPTQ family's blocked lazy-batch sweep (GPTQ, GPTAQ's P1 term, the
// compensation-aware P2 term, exact and official variants) and RTN, in
// float64, on one linear's weights.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "src/methods/quant_config.h"
#include "src/methods/quant_result.h"

namespace streamq {

class Backend;

// How the compensation terms are stored.
//  Unfolded: P1 and P2 as the papers write them; the sweep applies three
//    terms. Always used by the official variant (it reproduces released code).
//  Folded (the exact variant's default): one matrix PD = triu(D1 U^T, 1) U.
//    Since H = (H + damp I) - damp I = U^-1 U^-T - damp I, triu(H U^T, 1) U =
//    I - diag(U)^-1 U exactly, so X X^T's share of P2 is -U[j,k] / U[j,j]
//    and folds into the error coefficient; and D2 = H + D1 (or H), so
//    P1 and P2 share PD. Column j's update of column k > j becomes
//      -e'_j U[j,k] + a'_j PD[j,k],
//      e'_j = (w_j - q_j + cae_alpha c_j) / U[j,j],
//      a'_j = gptaq_alpha a_j + cae_alpha c_j [when D2 holds D1],
//    equal term by term to the unfolded update up to float64 rounding. Only
//    the exact variant may use it.
enum class CompensationForm { Folded, Unfolded };

// What the sweep needs from one shared input's statistics, computed once and
// reused by every linear reading that input (q,k,v; gate,up): dead inputs,
// processing order, the damped factor U with (H + damp I)^-1 = U^T U, and the
// precomputed compensation matrices, all in processing order:
//   P1 = gptaq_alpha * triu(D1 U^T, 1) U,  D1 = dX X^T           (GPTAQ)
//   P2 = cae_alpha   * triu(D2 U^T, 1) U,  D2 = X~ X^T or X X^T  (CAE)
// (compensation paper Eq. 20: ((D L) ⊙ M_U) L^T with L = U^T), or in the
// folded form PD alone (see CompensationForm). D's columns at dead inputs are
// zeroed, as the released code does.
struct FactoredHessian {
  int64_t n = 0;
  CompensationForm form = CompensationForm::Unfolded;
  std::vector<double> u;        // [n, n] upper triangular
  std::vector<double> p1, p2;   // [n, n] strictly upper, or empty when unused (unfolded)
  std::vector<double> pd;       // [n, n] strictly upper, unscaled, or empty when unused (folded)
  std::vector<int32_t> perm;    // processing order
  std::vector<uint8_t> dead;    // [n], original order: diag(H) == 0
  int64_t dead_inputs = 0;
  double damp = 0;              // damping actually added
  int cholesky_retries = 0;
  double seconds = 0;
  // Two-stage (cfg.two_stage()) only: the undamped H and dX X^T (empty without
  // an FP flow), original order, which stage 2 refines the scales against.
  std::vector<double> h, cross;
  uint64_t bytes() const { return 8 * (u.size() + p1.size() + p2.size() + pd.size() + h.size() + cross.size()); }
};

// h: undamped Hessian [n, n]; cross: dX X^T [n, n] with h's scale, or null
// when the method needs no FP flow. Grows the damping tenfold per failed
// factorization; throws InternalError after cfg.max_damp_retries. `form` is
// honoured by the exact variant; the official variant is always unfolded.
// `backend` runs the O(n^3) work (the factorization and the compensation
// products, float64): the host backend, or a device, whose buffers are staged
// from and back to the host vectors of the result (at most three [n, n]
// float64 buffers at once; emulated gives the CPU backend's bits).
FactoredHessian factor_hessian(Backend& backend, const std::vector<double>& h,
                               const std::vector<double>* cross, int64_t n, const QuantConfig& cfg,
                               CompensationForm form = CompensationForm::Folded,
                               FactorPrecision precision = FactorPrecision::F64);

// Quantizes w[m, n] (row-major, (out, in)). With cfg.variant == Exact the
// update uses each column's compensated value in every term and group grids
// are fitted on the current weights, so the result does not depend on blocksize.
// With two-stage grids (cfg.two_stage(); f from factor_hessian with that cfg)
// stage 1 fixes the grids before the sweep (as static groups) and stage 2
// refines the scales after it (src/methods/two_stage.h).
QuantResult gptq_quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                          const FactoredHessian& f, const QuantConfig& cfg);
// Convenience: factor then quantize (tests, the layer command).
QuantResult gptq_quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                          const std::vector<double>& h, const QuantConfig& cfg,
                          const std::vector<double>* cross = nullptr);

// Round-to-nearest on the same grids (groups in natural column order). Not
// for two-stage grids, which need H: see two_stage_rtn_quantize.
QuantResult rtn_quantize(const double* w, int64_t m, int64_t n, const QuantConfig& cfg);

// Columns in processing order: by descending h_ii (ties by index) with
// act-order, identity otherwise.
std::vector<int32_t> processing_order(const std::vector<double>& h, int64_t n, bool act_order);

}  // namespace streamq
