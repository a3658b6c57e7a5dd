// Row-major GEMM on the GPU through cuBLAS (float, double) and the bf16 Gram
// product for Hessians. CPU twin: kernels/cpu/gemm.cpp. Everything is
// asynchronous on the handle's stream.
#pragma once

#include <cublas_v2.h>

#include <cstdint>

#include "kernels/backend.h"

namespace streamq {

// C[m,n] = alpha * op(A) op(B) + beta * C with the Backend::gemm contract
// (row strides lda/ldb/ldc of the stored matrices; beta == 0 never reads C;
// k == 0 gives beta * C). Float math stays fp32 (no TF32), so results agree
// with the CPU to ~k * eps.
void cuda_gemm(cublasHandle_t handle, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
               float alpha, const float* a /*[op(A): m,k]*/, int64_t lda,
               const float* b /*[op(B): k,n]*/, int64_t ldb, float beta,
               float* c /*[m, ldc]*/, int64_t ldc);
void cuda_gemm(cublasHandle_t handle, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
               double alpha, const double* a /*[op(A): m,k]*/, int64_t lda,
               const double* b /*[op(B): k,n]*/, int64_t ldb, double beta,
               double* c /*[m, ldc]*/, int64_t ldc);

// h[n,n] = beta * h + x^T x for bf16 x (raw bits) with fp32 accumulation.
// bf16 x bf16 products are exact in fp32, so h matches an fp32 sum of the
// bf16-rounded values up to summation order. beta == 0 never reads h.
void cuda_gram_bf16_accumulate(cublasHandle_t handle, const uint16_t* x_bf16 /*[tokens, n]*/,
                               int64_t n, int64_t tokens, float* h /*[n, n]*/, float beta);

}  // namespace streamq
