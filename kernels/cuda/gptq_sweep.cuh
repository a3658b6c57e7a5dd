// The exact-variant GPTQ sweep (GPTQ, GPTAQ's P1, CAE's P2) on the GPU, in
// float32: one fused launch per block of <= 128 columns (quantize a column,
// its error, the rank-1 update of the rest of the block, group grids fitted on
// the current weights when a group starts), the cross-block updates through
// cuBLAS sgemm. CPU twin: kernels/cpu/gptq_sweep.h (same operation
// order in the fused part; only the GEMMs' summation order differs).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/gptq_sweep_problem.h"

namespace streamq {

// p's and out's pointers are device memory; p.w is not modified. Runs on
// `stream` and binds `cublas` to it in host pointer mode; its math mode must
// not allow TF32 (the sweep is specified in float32). Returns once the stream
// has finished: it reads back a flag and throws InternalError naming the
// first non-finite weight (row, original column). Scratch (~3 m n floats,
// plus m x group and m x MSE-steps floats where used) is allocated per call.
void cuda_gptq_sweep_device(cudaStream_t stream, cublasHandle_t cublas, const SweepProblem& p,
                            const SweepOutput& out);

// The same with host arrays in and out: uploads, runs on a private stream and
// cuBLAS handle, downloads. Synchronous.
void cuda_gptq_sweep(const SweepProblem& p, const SweepOutput& out);

}  // namespace streamq
