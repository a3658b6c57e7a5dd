// One linear's GPTQ sweep as a Backend op (Backend::gptq_sweep): the
// translation of a FactoredHessian and a QuantConfig into the kernels'
// SweepProblem (kernels/gptq_sweep_problem.h, which knows no src/methods
// types), its upload into a backend's buffers, and the result back as a
// QuantResult. gptq_quantize (gptq.h) stays the float64 sweep that covers
// every option; this path covers what the float32 sweeps implement.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "src/methods/gptq.h"
#include "src/methods/quant_config.h"
#include "src/methods/quant_result.h"

namespace streamq {

// What the backend sweep covers: everything but two-stage grids, free-min
// grids and the official variant, which stay on gptq_quantize's float64 path.
bool sweep_op_supports(const QuantConfig& cfg);

// QuantConfig's grid flattened for the kernels. Throws InternalError when
// !sweep_op_supports(cfg).
SweepGrid sweep_grid_from(const QuantConfig& cfg);

// Float copies of one linear's sweep inputs on the host; problem() points
// into them (host pointers). Tests edit these before uploading.
struct SweepHostInputs {
  int64_t m = 0, n = 0;
  std::vector<float> w, u, p1, p2;  // p1/p2 empty when unused
  std::vector<int32_t> perm;
  std::vector<uint8_t> dead;
  QuantConfig cfg;
  SweepProblem problem() const;
};

// w[m, n] (float64, original order) and f, rounded to float. f must be
// unfolded (factor_hessian(..., CompensationForm::Unfolded)): the sweep
// applies P1 and P2 as separate terms.
SweepHostInputs make_sweep_host_inputs(const double* w, int64_t m, int64_t n, const FactoredHessian& f,
                                       const QuantConfig& cfg);

// The same inputs in a backend's buffers; problem points into them (and
// stays valid when this is moved: buffers never move their memory).
struct SweepInputBuffers {
  Buffer<float> w, u, p1, p2;
  Buffer<int32_t> perm;
  Buffer<uint8_t> dead;
  SweepProblem problem;
};
// Queues the uploads (in.vectors must outlive them: synchronize or run the
// sweep, which returns when done, before dropping `in`).
SweepInputBuffers upload_sweep_inputs(Backend& be, const SweepHostInputs& in);

// The sweep's outputs in a backend's buffers, uninitialized.
struct SweepOutputBuffers {
  Buffer<uint8_t> codes;       // [m, n]
  Buffer<float> q;             // [m, n]
  Buffer<float> scales, zeros; // [ngroups, m]
  SweepOutput output() const { return {codes.data(), q.data(), scales.data(), zeros.data()}; }
};
SweepOutputBuffers alloc_sweep_outputs(Backend& be, const SweepProblem& p);

// The whole op: inputs built from (w, f, cfg), uploaded to `be`, swept at
// `precision`, results downloaded into a QuantResult (g_idx, perm and the
// factor's damping and retries filled as gptq_quantize fills them). Throws
// InternalError when be does not support the precision's op or cfg is not
// covered (sweep_op_supports).
QuantResult gptq_sweep_on_backend(Backend& be, const double* w, int64_t m, int64_t n, const FactoredHessian& f,
                                  const QuantConfig& cfg, SweepPrecision precision);

}  // namespace streamq
