// SDE's banded ops on the GPU. CPU twins: kernels/cpu/sde_band.cpp; the
// contracts are Backend::sde_banded_product and Backend::sde_band_grad's.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace streamq {

// ud [rows, rank] = U D, D = diag(s + P[0]) + the band's other rows of P.
// Asynchronous on `stream`; the CPU twin's float operations in its order,
// each rounded (no contraction): bit-identical.
void cuda_sde_banded_product(cudaStream_t stream, const float* u, const float* s, const float* params, int64_t rows,
                             int64_t rank, int64_t band, float* ud);
// dparams [(2 band + 1) rank] from m [rank, cols] and vt [rank, cols]: one
// thread per entry, the CPU twin's four interleaved float64 partial sums in
// its order: bit-identical. Asynchronous on `stream`.
void cuda_sde_band_grad(cudaStream_t stream, const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band,
                        float* dparams);

}  // namespace streamq
