// The method interface: one linear's weights and input statistics in, codes,
// grids and dequantized weights out. Every method (RTN, GPTQ; GPTAQ, CAE,
// LoaQ next) is one implementation behind it.
#pragma once

#include <memory>
#include <string>

#include "src/methods/linear_stats.h"
#include "src/methods/quant_config.h"
#include "src/methods/quant_result.h"

namespace streamq {

class Backend;

// What a method derives from one shared input's statistics alone (for GPTQ
// the factored Hessian): computed once per sub-layer group and reused for
// every linear that reads that input.
class PreparedInput {
 public:
  virtual ~PreparedInput() = default;
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<PreparedInput> prepare(Backend& backend, const LinearStats& stats) const = 0;
  // w[m, n] in float64 (out, in); `prepared` came from prepare() on its input.
  virtual QuantResult quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                               const PreparedInput& prepared) const = 0;
};

// The method cfg.method names, configured by cfg (validated here).
std::unique_ptr<Method> make_method(const QuantConfig& cfg);

}  // namespace streamq
