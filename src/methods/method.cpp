// RTN and the GPTQ family (GPTQ, GPTAQ, with or without CAE) behind the Method interface.
#include "methods/method.h"

#include "methods/gptq.h"

namespace streamq {
namespace {

class NothingPrepared final : public PreparedInput {};

class RtnMethod final : public Method {
 public:
  explicit RtnMethod(QuantConfig cfg) : cfg_(std::move(cfg)) {}
  std::string name() const override { return "rtn"; }
  std::unique_ptr<PreparedInput> prepare(Backend&, const LinearStats&) const override {
    return std::make_unique<NothingPrepared>();
  }
  QuantResult quantize(Backend&, const double* w, int64_t m, int64_t n, const PreparedInput&) const override {
    return rtn_quantize(w, m, n, cfg_);
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
    std::vector<double> cross;
    if (cfg_.needs_fp_flow()) cross = stats.cross();
    return std::make_unique<GptqPrepared>(
        factor_hessian(be, stats.hessian(), cfg_.needs_fp_flow() ? &cross : nullptr, stats.in_features(), cfg_));
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
