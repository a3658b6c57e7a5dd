// The CPU implementations of the Backend ops as free functions, one file per
// op family, named as its CUDA twin in kernels/cuda/ (gemm, linalg, rmsnorm,
// elementwise, rope, attention; gptq_sweep.h holds the sweep).
// CpuBackend forwards to these; CUDA tests use them as the reference twin.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"

namespace streamq::cpu {

// BLAS/LAPACK take 32-bit sizes: throws InternalError naming `op` and `what`
// when v is negative or does not fit.
int checked_int(int64_t v, const char* op, const char* what);

// The argument checks of the ops below (InternalError naming the op and its
// shapes), callable alone: the emulated device runs them when an op is
// queued, so a bad argument fails at the call as on the CPU.
void check_gemm_args(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, int64_t lda,
                     int64_t ldb, int64_t ldc);
void check_gram_args(int64_t n, int64_t tokens);
void check_rope_args(int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim, const RopeTable& table);
void check_attention_args(int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim);

// gemm.cpp: the OpenBLAS kernel family this process runs (its corename:
// "Haswell", "SkylakeX", ...). Families round differently, so it decides the
// last bits of every GEMM and, through GPTQ's and the training's discrete
// decisions, the output's bytes (tools/cli_blas_kernels.h picks it).
std::string blas_kernels();

// gemm.cpp: OpenBLAS row-major GEMM, single-threaded BLAS calls on fixed
// tiles of C spread over oneTBB (the same bits for any thread count).
void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc);
void gram_bf16_accumulate(const uint16_t* x_bf16, int64_t n, int64_t tokens, float* h, float beta);

// linalg.cpp: tiled float64 factorizations (see Backend for the contracts),
// byte-identical for any thread count. The *_tiled forms take the tile size
// (for tests: many tiles on small matrices; for the bench's tile sweep); the
// Backend ops use kFactorTile.
inline constexpr int64_t kFactorTile = 256;
bool cholesky_lower(double* a, int64_t n);
// Backend::svd: LAPACKE_dgesdd (divide and conquer, jobz 'S') on row-major a.
void svd(double* a, int64_t m, int64_t n, double* s, double* u, double* vt);
void invert_lower_triangular(double* l, int64_t n);
bool inverse_upper_factor(double* h, int64_t n);
bool inverse_upper_factor(float* h, int64_t n);  // the same in float32 (LAPACK's s routines)
bool cholesky_lower_tiled(double* a, int64_t n, int64_t tile);
void invert_lower_triangular_tiled(double* l, int64_t n, int64_t tile);
bool inverse_upper_factor_tiled(double* h, int64_t n, int64_t tile);
bool inverse_upper_factor_tiled(float* h, int64_t n, int64_t tile);

// rmsnorm.cpp
void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t dim,
                      float eps);

// elementwise.cpp
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);
void subtract(const float* a, const float* b, float* out, int64_t n);
void add_bias(float* y, const float* bias, int64_t rows, int64_t cols);

// ste.cpp (Backend::fake_quant_ste, ste_mask_grad) and fake_quant_ste's
// argument check (sizes, group in 1..cols, maxq >= 1).
void check_fake_quant_ste_args(int64_t rows, int64_t cols, int64_t group, int32_t maxq);
void fake_quant_ste(const float* w, int64_t rows, int64_t cols, int64_t group, const double* params, int32_t maxq,
                    bool free_min, float* wq, uint8_t* mask);
void ste_mask_grad(const uint8_t* mask, float* g, int64_t n);

// sde_band.cpp (Backend::sde_banded_product, sde_band_grad) and their
// argument check (sizes, band in 0..rank-1).
void check_sde_band_args(const char* op, int64_t rows, int64_t rank, int64_t band);
void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                        int64_t band, float* ud);
void sde_band_grad(const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band, float* dparams);

// convert.cpp (Backend::bf16_to_f32): exact widening.
void bf16_to_f32(const uint16_t* in, float* out, int64_t n);

// hadamard.cpp (Backend::hadamard_rows). The scale 1/sqrt(n) as a float,
// and the argument check (m divides n, n / m a power of two).
float hadamard_scale(int64_t n);
void check_hadamard_args(int64_t rows, int64_t n, int64_t m);
void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs, bool inverse);

// rope.cpp
void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
          const RopeTable& table);
void rope_backward(float* d, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                   const RopeTable& table);

// attention.cpp
void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq,
               int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim);
void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq, float* dk,
                        float* dv, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim);

}  // namespace streamq::cpu
