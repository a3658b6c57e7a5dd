// FactoredHessian + QuantConfig -> SweepProblem in a backend's memory, and
// the sweep's outputs back as a QuantResult.
#include "src/methods/sweep_problem.h"

#include <chrono>
#include <string>

#include "src/core/error.h"

namespace streamq {

bool sweep_op_supports(const QuantConfig& cfg) {
  return !cfg.two_stage() && !cfg.free_min && cfg.variant == Variant::Exact;
}

SweepGrid sweep_grid_from(const QuantConfig& cfg) {
  if (!sweep_op_supports(cfg)) throw InternalError("the backend GPTQ sweep does not support " + cfg.describe());
  SweepGrid g;
  g.bits = cfg.bits;
  g.sym = cfg.sym;
  g.gptq_style = cfg.grid_style == GridStyle::Gptq;
  g.mse = cfg.clip == ClipSearch::Mse;
  g.mse_grid = cfg.mse_grid;
  g.mse_steps = static_cast<int>(cfg.mse_max_shrink * cfg.mse_grid);  // as Grid::fit counts them
  g.mse_norm = cfg.mse_norm;
  g.zero_min = cfg.checkpoint_format == CheckpointFormat::Gptq ? 1 : 0;
  return g;
}

namespace {

// Everything but the array pointers.
SweepProblem problem_shape(int64_t m, int64_t n, const QuantConfig& cfg) {
  SweepProblem p;
  p.m = m;
  p.n = n;
  p.grid = sweep_grid_from(cfg);
  p.group = cfg.group;
  p.static_groups = cfg.static_groups && cfg.group > 0;
  p.p1_original = cfg.p1_original;
  p.blocksize = cfg.blocksize;
  return p;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

}  // namespace

SweepProblem SweepHostInputs::problem() const {
  SweepProblem p = problem_shape(m, n, cfg);
  p.w = w.data();
  p.u = u.data();
  p.p1 = p1.empty() ? nullptr : p1.data();
  p.p2 = p2.empty() ? nullptr : p2.data();
  p.perm = perm.data();
  p.dead = dead.data();
  return p;
}

SweepHostInputs make_sweep_host_inputs(const double* w, int64_t m, int64_t n, const FactoredHessian& f,
                                       const QuantConfig& cfg) {
  if (f.form != CompensationForm::Unfolded)
    throw InternalError("GPTQ sweep op: factor the Hessian with CompensationForm::Unfolded");
  if (f.n != n)
    throw InternalError("GPTQ sweep op: factored Hessian is " + std::to_string(f.n) + " wide, W has " +
                        std::to_string(n) + " columns");
  SweepHostInputs in;
  in.m = m;
  in.n = n;
  in.w.assign(w, w + m * n);
  in.u = to_float(f.u);
  in.p1 = to_float(f.p1);
  in.p2 = to_float(f.p2);
  in.perm = f.perm;
  in.dead = f.dead;
  in.cfg = cfg;
  return in;
}

SweepInputBuffers upload_sweep_inputs(Backend& be, const SweepHostInputs& in) {
  SweepInputBuffers b;
  b.w = be.upload_new(in.w, "GPTQ sweep W");
  b.u = be.upload_new(in.u, "GPTQ sweep U");
  b.p1 = be.upload_new(in.p1, "GPTQ sweep P1");
  b.p2 = be.upload_new(in.p2, "GPTQ sweep P2");
  b.perm = be.upload_new(in.perm, "GPTQ sweep order");
  b.dead = be.upload_new(in.dead, "GPTQ sweep dead inputs");
  b.problem = problem_shape(in.m, in.n, in.cfg);
  b.problem.w = b.w.data();
  b.problem.u = b.u.data();
  b.problem.p1 = in.p1.empty() ? nullptr : b.p1.data();
  b.problem.p2 = in.p2.empty() ? nullptr : b.p2.data();
  b.problem.perm = b.perm.data();
  b.problem.dead = in.dead.empty() ? nullptr : b.dead.data();
  return b;
}

SweepOutputBuffers alloc_sweep_outputs(Backend& be, const SweepProblem& p) {
  const size_t mn = static_cast<size_t>(p.m * p.n), gm = static_cast<size_t>(p.ngroups() * p.m);
  SweepOutputBuffers o;
  o.codes = be.alloc<uint8_t>(mn, "GPTQ sweep codes");
  o.q = be.alloc<float>(mn, "GPTQ sweep dequantized weights");
  o.scales = be.alloc<float>(gm, "GPTQ sweep scales");
  o.zeros = be.alloc<float>(gm, "GPTQ sweep zeros");
  return o;
}

QuantResult gptq_sweep_on_backend(Backend& be, const double* w, int64_t m, int64_t n, const FactoredHessian& f,
                                  const QuantConfig& cfg, SweepPrecision precision) {
  cfg.validate();
  const SweepHostInputs host = make_sweep_host_inputs(w, m, n, f, cfg);
  const SweepInputBuffers in = upload_sweep_inputs(be, host);
  const SweepOutputBuffers out = alloc_sweep_outputs(be, in.problem);
  const auto t0 = std::chrono::steady_clock::now();
  be.gptq_sweep(in.problem, out.output(), precision);
  QuantResult r;
  r.rows = m;
  r.cols = n;
  r.bits = cfg.bits;
  r.group = cfg.group;
  r.ngroups = in.problem.ngroups();
  const std::vector<float> q = be.download_all(out.q), scales = be.download_all(out.scales),
                           zeros = be.download_all(out.zeros);
  r.codes = be.download_all(out.codes);
  r.seconds_sweep = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.dequant.assign(q.begin(), q.end());
  r.scales.assign(scales.begin(), scales.end());
  r.zeros.assign(zeros.begin(), zeros.end());
  r.g_idx.assign(static_cast<size_t>(n), 0);
  if (m > 0 && n > 0) sweep_g_idx(host.problem(), r.g_idx.data());
  r.perm = f.perm;
  r.cholesky_retries = f.cholesky_retries;
  r.damp = f.damp;
  r.dead_inputs = f.dead_inputs;
  r.seconds_factor = f.seconds;
  r.working_bytes = f.bytes() + in.w.bytes() + in.u.bytes() + in.p1.bytes() + in.p2.bytes() + out.codes.bytes() +
                    out.q.bytes() + out.scales.bytes() + out.zeros.bytes();
  return r;
}

}  // namespace streamq
