// The method interface: one linear's weights and input statistics in, codes,
// grids and dequantized weights out. Every method (RTN, GPTQ; GPTAQ, CAE,
// LoaQ next) is one implementation behind it.
#pragma once

#include <memory>
#include <string>

#include "methods/linear_stats.h"
#include "methods/quant_config.h"
#include "methods/quant_result.h"

namespace streamq {

class Backend;

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  // w[m, n] in float64 (out, in); stats are the statistics of its input.
  virtual QuantResult quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                               const LinearStats& stats) const = 0;
};

// The method cfg.method names, configured by cfg (validated here).
std::unique_ptr<Method> make_method(const QuantConfig& cfg);

}  // namespace streamq
