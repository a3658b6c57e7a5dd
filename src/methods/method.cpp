// RTN and the GPTQ family (GPTQ, GPTAQ, with or without CAE) behind the Method interface.
#include "src/methods/method.h"

#include "src/methods/gptq.h"
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
  std::unique_ptr<PreparedInput> prepare(Backend&, const LinearStats& stats) const override {
    if (!cfg_.two_stage()) return std::make_unique<NothingPrepared>();
    auto p = std::make_unique<RtnTwoStagePrepared>();
    p->h = stats.hessian();
    if (stats.has_cross()) p->cross = stats.cross();
    return p;
  }
  QuantResult quantize(Backend& be, const double* w, int64_t m, int64_t n,
                       const PreparedInput& prepared) const override {
    if (!cfg_.two_stage()) return rtn_quantize(w, m, n, cfg_);
    const auto& p = dynamic_cast<const RtnTwoStagePrepared&>(prepared);
    return two_stage_rtn_quantize(be, w, m, n, p.h, p.cross.empty() ? nullptr : &p.cross, cfg_);
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
  std::unique_ptr<PreparedInput> prepare(Backend& be, const LinearStats& stats) const override {
    // Without a collected FP flow, no cross term: factor_hessian says so when
    // the method needs it; two-stage then refines with C = 0.
    std::vector<double> cross;
    if (cfg_.needs_fp_flow() && stats.has_cross()) cross = stats.cross();
    return std::make_unique<GptqPrepared>(
        factor_hessian(be, stats.hessian(), cross.empty() ? nullptr : &cross, stats.in_features(), cfg_));
  }
  QuantResult quantize(Backend& be, const double* w, int64_t m, int64_t n,
                       const PreparedInput& prepared) const override {
    return gptq_quantize(be, w, m, n, dynamic_cast<const GptqPrepared&>(prepared).factored, cfg_);
  }

 private:
  QuantConfig cfg_;
};

}  // namespace

std::unique_ptr<Method> make_method(const QuantConfig& cfg) {
  cfg.validate();
  if (cfg.method == MethodKind::Rtn) return std::make_unique<RtnMethod>(cfg);
  return std::make_unique<GptqMethod>(cfg);
}

}  // namespace streamq
