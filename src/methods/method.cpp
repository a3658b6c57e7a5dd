// RTN and GPTQ behind the Method interface.
#include "methods/method.h"

#include "methods/gptq.h"

namespace streamq {
namespace {

class RtnMethod final : public Method {
 public:
  explicit RtnMethod(QuantConfig cfg) : cfg_(std::move(cfg)) {}
  std::string name() const override { return "rtn"; }
  QuantResult quantize(Backend&, const double* w, int64_t m, int64_t n, const LinearStats&) const override {
    return rtn_quantize(w, m, n, cfg_);
  }

 private:
  QuantConfig cfg_;
};

class GptqMethod final : public Method {
 public:
  explicit GptqMethod(QuantConfig cfg) : cfg_(std::move(cfg)) {}
  std::string name() const override { return "gptq"; }
  QuantResult quantize(Backend& be, const double* w, int64_t m, int64_t n, const LinearStats& stats) const override {
    return gptq_quantize(be, w, m, n, stats.hessian(), cfg_);
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
