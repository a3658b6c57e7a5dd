// The float32 CPU twin of the CUDA GPTQ sweep (kernels/cuda/gptq_sweep.cuh):
// the same blocked exact-variant algorithm, in the same operation order, as
// plain loops. It is the GPU kernel's tight reference, and is itself tied to
// src/methods' float64 gptq_quantize by tests/kernels/test_gptq_sweep32.cpp.
#pragma once

#include "kernels/gptq_sweep_problem.h"

namespace streamq {

// Host pointers. Throws InternalError on a bad problem and on the first
// non-finite weight (row and original column named).
void cpu_gptq_sweep32(const SweepProblem& p, const SweepOutput& out);

// The very same loops in float64 (inputs are float, outputs rounded to
// float): lets tests separate algorithm from float32 rounding when comparing
// with the float64 sweep of src/methods.
void cpu_gptq_sweep64(const SweepProblem& p, const SweepOutput& out);

}  // namespace streamq
