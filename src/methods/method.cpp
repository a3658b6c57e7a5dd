// RTN and the GPTQ family (GPTQ, GPTAQ, with or without CAE) behind the
// Method interface, and LoaQ as a Method around either.
#include "src/methods/method.h"

#include "src/core/error.h"
#include "src/methods/gptq.h"
#include "src/methods/sweep_problem.h"
#include "src/methods/two_stage.h"

namespace streamq {
namespace {

class NothingPrepared final : public PreparedInput {};

// Two-stage RTN: stage 1 weighs by H, stage 2 also uses dX X^T when collected.
class RtnTwoStagePrepared final : public PreparedInput {
 public:
  std::vector<double> h, cross;
};

class RtnMethod final : public Method {
 public:
  explicit RtnMethod(QuantConfig cfg) : cfg_(std::move(cfg)) {}
  std::string name() const override { return "rtn"; }
  // Two-stage's scale refinement aims at the FP output W X~.
  MethodNeeds needs() const override { return {.fp_flow = cfg_.needs_fp_flow()}; }
  std::unique_ptr<PreparedInput> prepare(const MethodBackends&, const LinearStats& stats) const override {
    if (!cfg_.two_stage()) return std::make_unique<NothingPrepared>();
    auto p = std::make_unique<RtnTwoStagePrepared>();
    p->h = stats.hessian();
    if (stats.has_cross()) p->cross = stats.cross();
    return p;
  }
  QuantResult quantize(const MethodBackends& bk, const double* w, int64_t m, int64_t n,
                       const PreparedInput& prepared) const override {
    if (!cfg_.two_stage()) return rtn_quantize(w, m, n, cfg_);
    const auto& p = dynamic_cast<const RtnTwoStagePrepared&>(prepared);
    return two_stage_rtn_quantize(bk.host, w, m, n, p.h, p.cross.empty() ? nullptr : &p.cross, cfg_);
  }

 private:
  QuantConfig cfg_;
};

class GptqPrepared final : public PreparedInput {
 public:
  explicit GptqPrepared(FactoredHessian f) : factored(std::move(f)) {}
  FactoredHessian factored;
};

class GptqMethod final : public Method {
 public:
  explicit GptqMethod(QuantConfig cfg) : cfg_(std::move(cfg)) {}
  std::string name() const override { return to_string(cfg_.method); }
  MethodNeeds needs() const override { return {.fp_flow = cfg_.needs_fp_flow()}; }
  std::unique_ptr<PreparedInput> prepare(const MethodBackends& bk, const LinearStats& stats) const override {
    // Without a collected FP flow, no cross term: factor_hessian says so when
    // the method needs it; two-stage then refines with C = 0. The device's
    // sweep op reads the unfolded P1/P2 (kernels/gptq_sweep_problem.h).
    std::vector<double> cross;
    if (cfg_.needs_fp_flow() && stats.has_cross()) cross = stats.cross();
    const CompensationForm form = bk.sweep_on_device(cfg_) ? CompensationForm::Unfolded : CompensationForm::Folded;
    Backend& factor_be = bk.factor_on_device ? bk.device : bk.host;
    const FactorPrecision precision = bk.factor_on_device ? bk.factor_precision : FactorPrecision::F64;
    return std::make_unique<GptqPrepared>(factor_hessian(factor_be, stats.hessian(), cross.empty() ? nullptr : &cross,
                                                         stats.in_features(), cfg_, form, precision));
  }
  QuantResult quantize(const MethodBackends& bk, const double* w, int64_t m, int64_t n,
                       const PreparedInput& prepared) const override {
    const FactoredHessian& f = dynamic_cast<const GptqPrepared&>(prepared).factored;
    if (bk.sweep_on_device(cfg_)) return gptq_sweep_on_backend(bk.device, w, m, n, f, cfg_, bk.precision);
    return gptq_quantize(bk.host, w, m, n, f, cfg_);
  }

 private:
  QuantConfig cfg_;
};

// LoaQ's statistics of a group's shared input, taken once for its linears,
// beside what the inner method prepared.
class LoaqPrepared final : public PreparedInput {
 public:
  std::unique_ptr<PreparedInput> inner;
  std::vector<double> h, d1, e;  // H, dX X^T, residual term E (output projections; else empty)
};

// The inner method quantizes LoaQ's target W~ (loaq.h) instead of W.
class LoaqMethod final : public Method {
 public:
  LoaqMethod(std::unique_ptr<Method> inner, LoaqConfig cfg, double percdamp)
      : inner_(std::move(inner)), cfg_(cfg), percdamp_(percdamp) {}
  std::string name() const override { return inner_->name() + "+loaq"; }
  MethodNeeds needs() const override {
    MethodNeeds n = inner_->needs();
    n.fp_flow = true;                     // D1 = dX X^T
    n.residual = n.residual || cfg_.beta != 0.0;  // E, weighted by beta (unread when 0)
    n.token_scales = n.token_scales || cfg_.norm;
    return n;
  }
  std::unique_ptr<PreparedInput> prepare(const MethodBackends& bk, const LinearStats& stats) const override {
    auto p = std::make_unique<LoaqPrepared>();
    p->inner = inner_->prepare(bk, stats);
    p->h = stats.hessian();
    p->d1 = stats.cross();
    if (stats.has_residual()) p->e = stats.residual();
    return p;
  }
  QuantResult quantize(const MethodBackends& bk, const double* w, int64_t m, int64_t n,
                       const PreparedInput& prepared) const override {
    const auto& p = dynamic_cast<const LoaqPrepared&>(prepared);
    const std::vector<double> target =
        loaq_target(bk.host, w, m, n, p.h, &p.d1, p.e.empty() ? nullptr : &p.e, cfg_.alpha, cfg_.beta, percdamp_);
    return inner_->quantize(bk, target.data(), m, n, *p.inner);
  }

 private:
  std::unique_ptr<Method> inner_;
  LoaqConfig cfg_;
  double percdamp_;  // H^-1 in the target is damped as the method damps H
};

}  // namespace

bool MethodBackends::sweep_on_device(const QuantConfig& cfg) const {
  return &device != &host && sweep_op_supports(cfg);
}

void MethodSpec::validate() const {
  quant.validate();
  if (loaq.alpha < 0 || loaq.beta < 0) throw InputError("--loaq-alpha and --loaq-beta must be >= 0");
}

std::string MethodSpec::describe() const {
  std::string m = quant.describe();
  if (loaq.enabled)
    m += " loaq(alpha=" + std::to_string(loaq.alpha) + ", beta=" + std::to_string(loaq.beta) +
         (loaq.norm ? ", norm)" : ")");
  return m;
}

std::unique_ptr<Method> make_method(const MethodSpec& spec) {
  spec.validate();
  std::unique_ptr<Method> m;
  if (spec.quant.method == MethodKind::Rtn) m = std::make_unique<RtnMethod>(spec.quant);
  else m = std::make_unique<GptqMethod>(spec.quant);
  if (spec.loaq.enabled) m = std::make_unique<LoaqMethod>(std::move(m), spec.loaq, spec.quant.percdamp);
  return m;
}

}  // namespace streamq
