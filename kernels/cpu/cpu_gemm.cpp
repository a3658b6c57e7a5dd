// Row-major GEMM on the CPU through OpenBLAS (float and double).
#include <cblas.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace streamq::cpu {
namespace {

CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::N ? CblasNoTrans : CblasTrans; }

// BLAS rejects a row stride shorter than the stored row (and asserts via
// xerbla, which prints and continues); say which argument is wrong instead.
void check_gemm_args(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                     int64_t lda, int64_t ldb, int64_t ldc) {
  const int64_t a_cols = ta == Trans::N ? k : m;
  const int64_t b_cols = tb == Trans::N ? n : k;
  auto shapes = [&] {
    return std::string(op) + "(m=" + std::to_string(m) + ", n=" + std::to_string(n) +
           ", k=" + std::to_string(k) + ", ta=" + (ta == Trans::N ? "N" : "T") +
           ", tb=" + (tb == Trans::N ? "N" : "T") + ", lda=" + std::to_string(lda) +
           ", ldb=" + std::to_string(ldb) + ", ldc=" + std::to_string(ldc) + ")";
  };
  if (m < 0 || n < 0 || k < 0) throw InternalError(shapes() + ": negative size");
  if (lda < std::max<int64_t>(1, a_cols)) throw InternalError(shapes() + ": lda too small");
  if (ldb < std::max<int64_t>(1, b_cols)) throw InternalError(shapes() + ": ldb too small");
  if (ldc < std::max<int64_t>(1, n)) throw InternalError(shapes() + ": ldc too small");
  checked_int(m, op, "m");
  checked_int(n, op, "n");
  checked_int(k, op, "k");
  checked_int(lda, op, "lda");
  checked_int(ldb, op, "ldb");
  checked_int(ldc, op, "ldc");
}

// k == 0 leaves C = beta * C; done by hand so that beta == 0 clears C (BLAS
// semantics: C is not read) without relying on each BLAS's quick-return path.
template <typename T>
void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
  }
}

}  // namespace

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  check_gemm_args("gemm<f32>", ta, tb, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  check_gemm_args("gemm<f64>", ta, tb, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  cblas_dgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace streamq::cpu
