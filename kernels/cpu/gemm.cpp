// Row-major GEMM on the CPU through OpenBLAS (float and double), tiled over C
// with oneTBB. OpenBLAS's own threading changes results with the thread count
// (it partitions differently), so OpenBLAS runs single-threaded and each
// fixed-size tile of C is one BLAS call: every element's arithmetic is the
// same whatever the number of threads, and outputs are byte-identical.
#include <cblas.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <string>

#include <vector>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "kernels/cpu/cpu_ops.h"

extern "C" char* openblas_get_corename(void);

namespace streamq::cpu {

std::string blas_kernels() {
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

namespace {

CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::N ? CblasNoTrans : CblasTrans; }


// k == 0 leaves C = beta * C; done by hand so that beta == 0 clears C (BLAS
// semantics: C is not read) without relying on each BLAS's quick-return path.
template <typename T>
void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
  }
}


// Fixed tile sizes (never derived from the thread count): large enough that
// each call runs near BLAS peak, small enough to spread 4096-wide products
// over many cores (16 tiles). Each call packs its A rows and B columns once,
// so a product of M x N packs B M / kTileM times and A N / kTileN times: at
// 256 x 512 that packing (sgemm_incopy/oncopy) was 15% of `streamq eval`;
// 1024 x 1024 took 5% off its CPU time (issue 16) and gives the same bytes
// (SmolLM2's logits compared).
constexpr int64_t kTileM = 1024;
constexpr int64_t kTileN = 1024;

template <typename T, typename Call>
void gemm_tiled(Trans ta, Trans tb, int64_t m, int64_t n, const T* a, int64_t lda, const T* b, int64_t ldb,
                T* c, int64_t ldc, Call call) {
  const int64_t tiles_m = (m + kTileM - 1) / kTileM, tiles_n = (n + kTileN - 1) / kTileN;
  auto run_tile = [&](int64_t t) {
    const int64_t i = (t / tiles_n) * kTileM, j = (t % tiles_n) * kTileN;
    const T* at = ta == Trans::N ? a + i * lda : a + i;  // rows i.. of op(A)
    const T* bt = tb == Trans::N ? b + j : b + j * ldb;  // columns j.. of op(B)
    call(std::min(kTileM, m - i), std::min(kTileN, n - j), at, bt, c + i * ldc + j);
  };
  if (tiles_m * tiles_n == 1) {
    run_tile(0);
    return;
  }
  tbb::parallel_for(int64_t{0}, tiles_m * tiles_n, run_tile);
}

// One BLAS call per precision, so the tiled driver below is written once.
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float* a, int lda,
               const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha, const double* a, int lda,
               const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
void gemm_any(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
              const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  check_gemm_args(op, ta, tb, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  gemm_tiled<T>(ta, tb, m, n, a, lda, b, ldb, c, ldc, [&](int64_t mm, int64_t nn, const T* at, const T* bt, T* ct) {
    blas_gemm(to_cblas(ta), to_cblas(tb), static_cast<int>(mm), static_cast<int>(nn), static_cast<int>(k), alpha, at,
              static_cast<int>(lda), bt, static_cast<int>(ldb), beta, ct, static_cast<int>(ldc));
  });
}

}  // namespace

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

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_any<float>("gemm<f32>", ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  gemm_any<double>("gemm<f64>", ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// The bf16 values widened to float (exact), then the float GEMM: bf16
// products are exact in float, so this is an fp32 accumulation of the exact
// products, as cuda_gram_bf16_accumulate computes it (up to summation order).
void check_gram_args(int64_t n, int64_t tokens) {
  if (n < 0 || tokens < 0)
    throw InternalError("gram_bf16_accumulate: negative size (n=" + std::to_string(n) + ", tokens=" +
                        std::to_string(tokens) + ")");
}

void gram_bf16_accumulate(const uint16_t* x_bf16, int64_t n, int64_t tokens, float* h, float beta) {
  check_gram_args(n, tokens);
  std::vector<float> x(static_cast<size_t>(n * tokens));
  tbb::parallel_for(int64_t{0}, tokens, [&](int64_t t) {
    for (int64_t i = 0; i < n; ++i) x[t * n + i] = streamq::bf16_to_f32(x_bf16[t * n + i]);
  });
  gemm(Trans::T, Trans::N, n, n, tokens, 1.0f, x.data(), std::max<int64_t>(1, n), x.data(),
       std::max<int64_t>(1, n), beta, h, std::max<int64_t>(1, n));
}

}  // namespace streamq::cpu
