// The method interface: one linear's weights and input statistics in, codes,
// grids and dequantized weights out. Every method (RTN, GPTQ, GPTAQ, CAE, and
// LoaQ around any of them) is one implementation behind it, and says which
// activations and statistics it reads, so the pipeline computes those and no
// others (as GPTQModel's processors declare require_fwd).
#pragma once

#include <memory>
#include <string>

#include "kernels/backend.h"
#include "src/methods/linear_stats.h"
#include "src/methods/loaq.h"
#include "src/methods/quant_config.h"
#include "src/methods/quant_result.h"

namespace streamq {

// Where a method's work runs. `host` (host-addressable: the CPU backend) runs
// the float64 method math: factorization, compensation matrices, LoaQ's
// target, grids, objectives. `device` holds the pipeline's activations and
// runs the GPTQ sweep when its op covers the configuration
// (sweep_op_supports), in `precision`; everything else stays on the host, as
// the report says. On the CPU device both are the same backend and the
// sweep is the host's float64 one, as it always was.
struct MethodBackends {
  Backend& host;
  Backend& device;
  SweepPrecision precision = SweepPrecision::F32;
  // The factor's O(n^3) float64 work (factor_hessian) on `device`, when it is
  // not the host and the device plan found room for it.
  bool factor_on_device = false;
  FactorPrecision factor_precision = FactorPrecision::F64;  // of the factor on `device`
  // True when the device is not the host and its sweep op takes `cfg`.
  bool sweep_on_device(const QuantConfig& cfg) const;
};

// What a method derives from one shared input's statistics alone (for GPTQ
// the factored Hessian): computed once per sub-layer group and reused for
// every linear that reads that input.
class PreparedInput {
 public:
  virtual ~PreparedInput() = default;
};

// What a method reads beyond the quantized flow's Hessian X X^T. The
// pipeline runs the FP flow (forward, propagation, storage) only for a
// method that reads it; the quantized flow never depends on it.
struct MethodNeeds {
  bool fp_flow = false;       // the FP model's activations: stats carry the cross term dX X^T
  bool residual = false;      // output projections (o_proj, down_proj): the residual-stream term E
  bool token_scales = false;  // both flows' tokens rescaled by their sub-layer output's RMS factor
};

// Everything that says how a linear is quantized: the method and grid, and
// LoaQ's transformed target around it. Converts from a QuantConfig alone
// (no LoaQ), so a plain method is written as its config.
struct MethodSpec {
  QuantConfig quant;
  LoaqConfig loaq;
  MethodSpec(QuantConfig q = {}, LoaqConfig l = {}) : quant(std::move(q)), loaq(l) {}
  // InputError naming the flag when a value is out of range.
  void validate() const;
  // "gptq w4 g32 sym quarot minmax loaq(alpha=0.500000, beta=0.500000)".
  std::string describe() const;
};

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  virtual MethodNeeds needs() const = 0;
  virtual std::unique_ptr<PreparedInput> prepare(const MethodBackends& backends, const LinearStats& stats) const = 0;
  // w[m, n] in float64 (out, in); `prepared` came from prepare() on its input
  // with the same backends.
  virtual QuantResult quantize(const MethodBackends& backends, const double* w, int64_t m, int64_t n,
                               const PreparedInput& prepared) const = 0;
  // Everything on one host-addressable backend (the CPU path).
  std::unique_ptr<PreparedInput> prepare(Backend& backend, const LinearStats& stats) const {
    return prepare(MethodBackends{backend, backend}, stats);
  }
  QuantResult quantize(Backend& backend, const double* w, int64_t m, int64_t n,
                       const PreparedInput& prepared) const {
    return quantize(MethodBackends{backend, backend}, w, m, n, prepared);
  }
};

// The method spec.quant.method names, configured by spec.quant, inside LoaQ
// when spec.loaq.enabled (validated here).
std::unique_ptr<Method> make_method(const MethodSpec& spec);

}  // namespace streamq
