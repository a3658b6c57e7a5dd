// Singular-value Diagonal Expansion (SDE; LSI when band = 0): a linear's
// weight re-parameterized through its thin SVD with a learnable band added
// around the singular values, and the pieces a training loop needs around
// it: W'(P), dL/dP from dL/dW', and RTN fake quantization with the
// straight-through estimator's mask (paper: cqe-plus-sde-crosslayer, III.B
// and IV.B; OmniQuant's STE).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "src/methods/grid.h"
#include "src/methods/quant_config.h"

namespace streamq {

// One linear W [rows=out, cols=in] re-parameterized through its thin SVD,
// W = U diag(S) Vt, r = min(rows, cols): W'(P) = U (diag(S) + Map(P)) Vt.
// P has (2*band+1) rows of r entries: row 0 the main diagonal
// (D[j][j] += P[0][j]), rows 2i-1 and 2i (i = 1..band) the i-th upper and
// lower diagonals (D[j][j+i] += P[2i-1][j], D[j+i][j] += P[2i][j], for
// j + i < r; entries past the end unused, their gradient 0). band = 0 is LSI.
// P starts at zero: W'(0) == W up to the SVD's rounding.
struct SdeLinear {
  int64_t rows = 0, cols = 0, rank = 0;
  int band = 0;
  std::vector<float> u;       // [rows, rank]
  std::vector<float> s;       // [rank], descending
  std::vector<float> vt;      // [rank, cols]
  std::vector<float> params;  // [(2*band+1) * rank], the learnable band, zero-initialized

  int64_t param_count() const { return (2 * static_cast<int64_t>(band) + 1) * rank; }
};

// The thin SVD of w [rows, cols] (Backend::svd in float64 on `be`, which
// must be host-addressable: the CPU's is LAPACKE_dgesdd, jobz 'S'; stored as
// float). band is clamped to rank - 1. Throws InputError for empty shapes, a
// negative band or a non-finite weight (naming its index), and InternalError
// when the SVD fails.
SdeLinear sde_decompose(Backend& be, const float* w, int64_t rows, int64_t cols, int band);

// The dense banded D [rank, rank] = diag(S) + Map(P) (host memory).
std::vector<float> sde_band_matrix(const SdeLinear& l);

// W'(P) = (U D) Vt into w_out [rows, cols]: U D with D banded
// (Backend::sde_banded_product), then a GEMM, on `be`, which must be
// host-addressable (its ops read and write the SdeLinear's host arrays;
// InputError otherwise). Returns after be.synchronize().
void sde_weight(Backend& be, const SdeLinear& l, float* w_out /*[rows, cols]*/);

// dL/dP from g = dL/dW' [rows, cols]: M = U^T g (a GEMM on `be`), then
// dL/dD[a][b] = sum_k M[a][k] Vt[b][k] read on the band (float64 sums,
// Backend::sde_band_grad) into dparams [(2*band+1) * rank], overwritten
// (unused entries 0).
void sde_band_grad(Backend& be, const SdeLinear& l, const float* g /*[rows, cols]*/,
                   float* dparams /*[(2*band+1) * rank]*/);

// The same two on any backend (a device too), through its ops: U D
// (Backend::sde_banded_product), the GEMMs, the band's dot products
// (Backend::sde_band_grad), with U, S, Vt uploaded once and the band
// uploaded per sde_weight, dL/dP downloaded per sde_band_grad (both
// (2 band + 1) rank floats). The same ops as the host-only versions above,
// bit-identical on every backend by contract, so the same bytes on the CPU
// and on a device (Sde.OnADeviceTheHostFunctionsBytes).
// On a host-addressable backend the host arrays are the operands and
// nothing is copied. `l` must outlive this (its U, S and Vt are read there).
struct SdeOnBackend {
  SdeOnBackend(Backend& be, const SdeLinear& l, const std::string& name);
  bool device = false;
  Buffer<float> u, s, vt, params, dparams, ud, m;  // a device's copies and work arrays
  std::vector<float> ud_host, m_host;             // the CPU's work arrays
  const float* u_op = nullptr;                    // where be's ops read and write them
  const float* s_op = nullptr;
  const float* vt_op = nullptr;
  float* ud_op = nullptr;
  float* m_op = nullptr;
};
// W' into w_out [rows, cols] in be's memory; queued on be (not synchronized).
void sde_weight(Backend& be, const SdeLinear& l, SdeOnBackend& f, float* w_out);
// dL/dP from g [rows, cols] in be's memory into dparams (host); returns
// after be.synchronize().
void sde_band_grad(Backend& be, const SdeLinear& l, SdeOnBackend& f, const float* g, float* dparams);
// Fake quantization of w [rows, cols] on the job's RTN grid (Grid(cfg), fit
// on the current values per row, or per group of cfg.group columns of each
// row, the last group of a row the remainder; cfg's clip search), with the
// STE mask: mask[i] = 1 when w[i]'s unclamped code (round(w/scale) + zero,
// or round((w - min)/scale) on a free-min grid) lies in [0, maxq], else 0.
// Scales are constants (detached), as OmniQuant's and LSI's STE treats them.
// A min/max grid gives mask 1 everywhere on QuaRot's symmetric grid; GPTQ's
// symmetric grid spans codes [-2^(b-1), 2^(b-1) - 1] steps for a range of
// +-(2^(b-1) - 1/2) steps, so a row's largest positive value clips by design,
// and an asymmetric grid whose fp16 scale rounded down may clip an extreme
// by one code: those elements get mask 0, as clamp's gradient gives them in
// OmniQuant. cfg is validated (InputError naming the flag); two-stage grids
// need the Hessian: InputError.
void fake_quant_ste(const QuantConfig& cfg, const float* w /*[rows, cols]*/, int64_t rows, int64_t cols,
                    float* wq /*[rows, cols]*/, uint8_t* mask /*[rows, cols]*/);

// The same in two halves, so that a training loop can keep a grid fixed
// over several steps (fitting an MSE grid costs far more than applying it):
// the grid parameters of w (per row, or per group of each row; fit_ste_grid
// validates cfg and refuses two-stage as above), then the fake quantization
// and mask of w (any values of the same shape) on those parameters.
struct SteGrid {
  int64_t rows = 0, cols = 0, group = 0;  // group: columns per grid (cols for per-row)
  std::vector<GridParams> params;          // [rows, ceil(cols / group)]
};
SteGrid fit_ste_grid(const QuantConfig& cfg, const float* w /*[rows, cols]*/, int64_t rows, int64_t cols);
void fake_quant_ste(const QuantConfig& cfg, const SteGrid& grid, const float* w /*[rows, cols]*/,
                    float* wq /*[rows, cols]*/, uint8_t* mask /*[rows, cols]*/);

}  // namespace streamq
