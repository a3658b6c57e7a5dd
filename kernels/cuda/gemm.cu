// cuBLAS GEMMs for row-major matrices (see gemm.cuh). cuBLAS is column-major,
// and a row-major matrix read as column-major is its transpose, so
// C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the same buffers and
// transpose flags with A and B swapped and m and n swapped.
#include "kernels/cuda/gemm.cuh"

#include <algorithm>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

cublasOperation_t to_cublas(Trans t) { return t == Trans::N ? CUBLAS_OP_N : CUBLAS_OP_T; }

std::string gemm_shapes(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                        int64_t lda, int64_t ldb, int64_t ldc) {
  return std::string(op) + "(m=" + std::to_string(m) + ", n=" + std::to_string(n) +
         ", k=" + std::to_string(k) + ", ta=" + (ta == Trans::N ? "N" : "T") +
         ", tb=" + (tb == Trans::N ? "N" : "T") + ", lda=" + std::to_string(lda) +
         ", ldb=" + std::to_string(ldb) + ", ldc=" + std::to_string(ldc) + ")";
}

// The CPU backend's checks, so both backends reject the same calls.
void check_gemm_args(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                     int64_t lda, int64_t ldb, int64_t ldc) {
  const int64_t a_cols = ta == Trans::N ? k : m;
  const int64_t b_cols = tb == Trans::N ? n : k;
  const auto shapes = [&] { return gemm_shapes(op, ta, tb, m, n, k, lda, ldb, ldc); };
  if (m < 0 || n < 0 || k < 0) throw InternalError(shapes() + ": negative size");
  if (lda < std::max<int64_t>(1, a_cols)) throw InternalError(shapes() + ": lda too small");
  if (ldb < std::max<int64_t>(1, b_cols)) throw InternalError(shapes() + ": ldb too small");
  if (ldc < std::max<int64_t>(1, n)) throw InternalError(shapes() + ": ldc too small");
  cuda_detail::checked_int(m, op, "m");
  cuda_detail::checked_int(n, op, "n");
  cuda_detail::checked_int(k, op, "k");
  cuda_detail::checked_int(lda, op, "lda");
  cuda_detail::checked_int(ldb, op, "ldb");
  cuda_detail::checked_int(ldc, op, "ldc");
}

// c[i * ldc + j] = beta * c (0 when beta == 0, without reading c) for i < m, j < n.
template <typename T>
__global__ void scale_matrix_kernel(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  const int64_t total = m * n;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    T* p = c + (idx / n) * ldc + idx % n;
    *p = beta == T(0) ? T(0) : beta * *p;
  }
}

// k == 0 (or an empty inner product): done by hand so that beta == 0 clears C
// without relying on the library's quick-return path.
template <typename T>
void scale_matrix(cublasHandle_t handle, const std::string& what, int64_t m, int64_t n, T beta,
                  T* c, int64_t ldc) {
  cudaStream_t stream = nullptr;
  CUBLAS_CHECK(cublasGetStream(handle, &stream));
  STREAMQ_LAUNCH(scale_matrix_kernel<T>, cuda_detail::elementwise_blocks(m * n),
                 cuda_detail::kElementwiseBlock, 0, stream)(m, n, beta, c, ldc);
  CUDA_CHECK_LAUNCH("scale_matrix_kernel for " + what);
}

// One cuBLAS call per precision, so the driver below is written once.
cublasStatus_t cublas_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float* alpha, const float* a, int lda,
                           const float* b, int ldb, const float* beta, float* c, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t cublas_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const double* alpha, const double* a, int lda,
                           const double* b, int ldb, const double* beta, double* c, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
void gemm_any(const char* op, cublasHandle_t handle, Trans ta, Trans tb, int64_t m, int64_t n,
              int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta,
              T* c, int64_t ldc) {
  check_gemm_args(op, ta, tb, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  const std::string shapes = gemm_shapes(op, ta, tb, m, n, k, lda, ldb, ldc);
  if (k == 0) {
    scale_matrix<T>(handle, shapes, m, n, beta, c, ldc);
    return;
  }
  // Column-major C^T[n,m] = op(B)^T[n,k] op(A)^T[k,m]; alpha/beta live on the host
  // (the handle's default pointer mode).
  CUBLAS_CHECK_CTX(
      cublas_gemm(handle, to_cublas(tb), to_cublas(ta), static_cast<int>(n), static_cast<int>(m),
                  static_cast<int>(k), &alpha, b, static_cast<int>(ldb), a,
                  static_cast<int>(lda), &beta, c, static_cast<int>(ldc)),
      shapes);
}

}  // namespace

void cuda_gemm(cublasHandle_t handle, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
               float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
               float* c, int64_t ldc) {
  gemm_any<float>("gemm<f32>", handle, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cuda_gemm(cublasHandle_t handle, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
               double alpha, const double* a, int64_t lda, const double* b, int64_t ldb,
               double beta, double* c, int64_t ldc) {
  gemm_any<double>("gemm<f64>", handle, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cuda_gram_bf16_accumulate(cublasHandle_t handle, const uint16_t* x_bf16, int64_t n,
                               int64_t tokens, float* h, float beta) {
  const char* op = "gram_bf16_accumulate";
  const std::string shapes = std::string(op) + "(n=" + std::to_string(n) +
                             ", tokens=" + std::to_string(tokens) + ")";
  const int ni = cuda_detail::checked_int(n, op, "n");
  const int ti = cuda_detail::checked_int(tokens, op, "tokens");
  if (n == 0) return;
  if (tokens == 0) {
    scale_matrix<float>(handle, shapes, n, n, beta, h, n);
    return;
  }
  // Row-major x[tokens, n] read column-major is X^T[n, tokens] with ld n, so
  // X^T X is op N times op T. Column-major h is H^T: the call computes
  // H^T = beta H^T + X^T X, which is H = beta H + X^T X because X^T X is
  // symmetric. COMPUTE_32F keeps fp32 accumulation (no reduced-precision sums).
  const float alpha = 1.0f;
  CUBLAS_CHECK_CTX(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, ni, ni, ti, &alpha, x_bf16,
                                CUDA_R_16BF, ni, x_bf16, CUDA_R_16BF, ni, &beta, h, CUDA_R_32F,
                                ni, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   shapes);
}

}  // namespace streamq
