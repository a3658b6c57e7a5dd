// The GPTQ sweep rows of the backend op table: every option the backend
// sweep supports (test::sweep_cases(), 48 configurations over odd shapes) on
// fresh random layers, run through Backend::gptq_sweep with guarded outputs
// and held to the CPU float64 reference, src/methods' gptq_quantize on the
// same float-rounded inputs (W, U, P1, P2), so only arithmetic differs.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "src/methods/gptq.h"
#include "src/methods/sweep_problem.h"
#include "tests/kernels/backend_op_cases.h"
#include "tests/support/gptq_sweep_adapter.h"

namespace streamq::test {

class SweepOpCase final : public OpCase {
 public:
  explicit SweepOpCase(SweepPrecision precision) : precision_(precision) {}
  Op op() const override { return precision_ == SweepPrecision::F32 ? Op::GptqSweep32 : Op::GptqSweep64; }
  std::string shape() const override {
    return std::to_string(configs_.size()) + " configurations (every option, m x n up to 40 x 200)";
  }
  // The metric is the pooled share of codes that differ from the reference.
  Tolerance tolerance() const override {
    if (precision_ == SweepPrecision::F64)
      return {0.0, "float64 loops vs the float64 methods sweep differ in summation order only (~1e-15 relative), "
                   "far below any rounding decision's margin: codes and grids identical, q then exact"};
    return {1.0 - kSweep32MinCodeAgreement,
            "float32's ~1e-6 relative error flips a code only within ~1e-5 of a rounding boundary; its row then "
            "takes another, equally valid GPTQ path (measured pooled agreement >= 0.99973 over 30 seeds); "
            "per configuration >= 0.95 and objective within 3% (kSweep32* in tests/support/gptq_sweep_adapter.h)"};
  }
  void prepare(std::mt19937_64& rng) override {
    const std::unique_ptr<Backend> cpu = make_cpu_backend();
    configs_.clear();
    for (const SweepCase& c : sweep_cases()) {
      Config k;
      k.c = c;
      k.layer = random_sweep_layer(rng, c.m, c.n, c.dead, 0.2);
      k.w = rounded_to_float(k.layer.w);
      const FactoredHessian f = rounded_to_float(factor_hessian(
          *cpu, k.layer.h, c.cfg.needs_fp_flow() ? &k.layer.cross : nullptr, c.n, c.cfg, CompensationForm::Unfolded));
      k.ref = gptq_quantize(*cpu, k.w.data(), c.m, c.n, f, c.cfg);
      k.in = make_sweep_host_inputs(k.w.data(), c.m, c.n, f, c.cfg);
      configs_.push_back(std::move(k));
    }
  }
  Outcome run(Backend& be) override {
    Outcome o;
    int64_t agree = 0, total = 0;
    double obj_ratio_sum = 0;
    for (const Config& k : configs_) {
      const std::string name = k.c.name();
      const SweepInputBuffers in = upload_sweep_inputs(be, k.in);
      const SweepProblem& p = in.problem;
      const size_t mn = static_cast<size_t>(p.m * p.n), gm = static_cast<size_t>(p.ngroups() * p.m);
      const GuardedBuffer<uint8_t> codes(be, mn);
      const GuardedBuffer<float> q(be, mn), scales(be, gm), zeros(be, gm);
      be.gptq_sweep(p, SweepOutput{codes.get(), q.get(), scales.get(), zeros.get()}, precision_);
      Sweep32Result got = make_sweep32_result(k.in.problem());
      got.codes = codes.download(name + " codes", &o.defect);
      got.q = q.download(name + " q", &o.defect);
      got.scales = scales.download(name + " scales", &o.defect);
      got.zeros = zeros.download(name + " zeros", &o.defect);
      const int64_t m = k.c.m, n = k.c.n;
      const SweepAgreement ag =
          compare_sweep_codes(got, k.ref.codes, k.ref.dequant, k.ref.scales, k.ref.zeros, m, n);
      if (!ag.bad.empty()) o.defect = first_defect(o.defect, name + ": " + ag.bad);
      if (got.g_idx != k.ref.g_idx) o.defect = first_defect(o.defect, name + ": g_idx differs");
      agree += ag.agree;
      total += ag.total;
      if (precision_ == SweepPrecision::F64) {
        for (size_t i = 0; i < got.scales.size(); ++i)
          if (double(got.scales[i]) != k.ref.scales[i] || double(got.zeros[i]) != k.ref.zeros[i])
            o.defect = first_defect(o.defect, name + ": grid " + std::to_string(i) + " differs");
        continue;
      }
      const double obj32 = h_weighted_error(k.w, got.q, k.layer.h, m, n);
      const double obj64 = h_weighted_error(k.w, k.ref.dequant, k.layer.h, m, n);
      obj_ratio_sum += obj32 / obj64;  // each configuration weighs the same
      if (ag.fraction() < kSweep32MinCaseCodeAgreement)
        o.defect = first_defect(o.defect, name + ": codes agree " + std::to_string(ag.fraction()));
      if (!(std::fabs(obj32 / obj64 - 1) <= kSweep32MaxObjectiveRel))
        o.defect = first_defect(o.defect, name + ": objective " + std::to_string(obj32) + " vs " +
                                              std::to_string(obj64));
    }
    if (precision_ == SweepPrecision::F32 && !configs_.empty()) {
      const double pooled = std::fabs(obj_ratio_sum / double(configs_.size()) - 1);
      if (!(pooled <= kSweep32MaxPooledObjectiveRel))
        o.defect = first_defect(o.defect, "pooled objective moved by " + std::to_string(pooled) +
                                              " (a bias, not rounding)");
    }
    o.error = total > 0 ? 1.0 - double(agree) / double(total) : 0.0;
    return o;
  }

 private:
  struct Config {
    SweepCase c;
    SweepLayer layer;
    std::vector<double> w;  // float-rounded W
    QuantResult ref;        // the float64 methods sweep on the float-rounded inputs
    SweepHostInputs in;
  };
  SweepPrecision precision_;
  std::vector<Config> configs_;
};

}  // namespace streamq::test
