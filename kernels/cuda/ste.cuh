// The straight-through estimator's ops on the GPU (SDE training). CPU twins:
// kernels/cpu/ste.cpp; the contracts are Backend::fake_quant_ste and
// Backend::ste_mask_grad's.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// wq, mask from w [rows, cols] on per-(row, group) grids params [rows,
// ceil(cols / group)] x {scale, zero} (float64). Asynchronous on `stream`;
// the CPU twin's float64 operations, each correctly rounded: bit-identical.
void cuda_fake_quant_ste(cudaStream_t stream, const float* w, int64_t rows, int64_t cols, int64_t group,
                         const double* params, int32_t maxq, bool free_min, float* wq, uint8_t* mask);
// g[i] = 0 where mask[i] == 0. Asynchronous on `stream`; bit-identical.
void cuda_ste_mask_grad(cudaStream_t stream, const uint8_t* mask, float* g, int64_t n);

}  // namespace streamq
