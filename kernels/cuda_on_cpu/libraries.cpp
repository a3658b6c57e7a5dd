// cuBLAS and cuSOLVER on the host's CBLAS and LAPACKE (see libraries.h).
// Argument checks follow the libraries' documented INVALID_VALUE cases, so a
// call the GPU would reject is rejected here too.
#include "kernels/cuda_on_cpu/libraries.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

struct cusolverDnContext {
  cudaStream_t stream = nullptr;
};

namespace {

// The queued work that produced the inputs is done before the host reads them.
bool wait_for(cudaStream_t stream) { return cudaStreamSynchronize(stream) == cudaSuccess; }

CBLAS_TRANSPOSE to_cblas(cublasOperation_t op) { return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }

bool valid_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

// cuBLAS's gemm checks (column-major): sizes >= 0, each leading dimension at
// least the rows of the matrix as stored.
bool valid_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb,
                int ldc) {
  if (!valid_op(ta) || !valid_op(tb) || m < 0 || n < 0 || k < 0) return false;
  const int a_rows = ta == CUBLAS_OP_N ? m : k, b_rows = tb == CUBLAS_OP_N ? k : n;
  return lda >= std::max(1, a_rows) && ldb >= std::max(1, b_rows) && ldc >= std::max(1, m);
}

// bf16 bits to the float they denote: exact (bf16 is float's top half).
float bf16_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// A stored column-major bf16 matrix (rows x cols, leading dimension ld) as a
// packed float one with leading dimension rows.
std::vector<float> widen_bf16(const void* p, int rows, int cols, int ld) {
  const auto* bits = static_cast<const uint16_t*>(p);
  std::vector<float> out(static_cast<size_t>(rows) * static_cast<size_t>(cols));
  for (int j = 0; j < cols; ++j)
    for (int i = 0; i < rows; ++i)
      out[static_cast<size_t>(j) * rows + i] = bf16_to_float(bits[static_cast<size_t>(j) * ld + i]);
  return out;
}

char lapack_uplo(cublasFillMode_t uplo) { return uplo == CUBLAS_FILL_MODE_UPPER ? 'U' : 'L'; }

bool valid_uplo(cublasFillMode_t uplo) {
  return uplo == CUBLAS_FILL_MODE_UPPER || uplo == CUBLAS_FILL_MODE_LOWER;
}

// The scalar behind alpha/beta: host memory, or (device mode) memory the
// stream wrote, readable once wait_for() has returned.
template <typename T>
T scalar(const void* p) {
  return *static_cast<const T*>(p);
}

}  // namespace

// ---- cuBLAS

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new (std::nothrow) cublasContext{};
  return *handle != nullptr ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->workspace = workspace;
  handle->workspace_bytes = bytes;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE)
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t* mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->pointer_mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
  }
  return "unknown status";
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float* alpha, const float* a, int lda, const float* b,
                           int ldb, const float* beta, float* c, int ldc) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!valid_gemm(ta, tb, m, n, k, lda, ldb, ldc) || alpha == nullptr || beta == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!wait_for(handle->stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  cblas_sgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), m, n, k, scalar<float>(alpha), a, lda, b,
              ldb, scalar<float>(beta), c, ldc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const double* alpha, const double* a, int lda,
                           const double* b, int ldb, const double* beta, double* c, int ldc) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!valid_gemm(ta, tb, m, n, k, lda, ldb, ldc) || alpha == nullptr || beta == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!wait_for(handle->stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  cblas_dgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), m, n, k, scalar<double>(alpha), a, lda, b,
              ldb, scalar<double>(beta), c, ldc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb,
                            int m, int n, int k, const void* alpha, const void* a,
                            cudaDataType_t a_type, int lda, const void* b, cudaDataType_t b_type,
                            int ldb, const void* beta, void* c, cudaDataType_t c_type, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t /*algo*/) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!valid_gemm(ta, tb, m, n, k, lda, ldb, ldc) || alpha == nullptr || beta == nullptr)
    return CUBLAS_STATUS_INVALID_VALUE;
  const bool f32 = c_type == CUDA_R_32F && a_type == b_type &&
                   (a_type == CUDA_R_16BF || a_type == CUDA_R_32F) &&
                   (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC);
  const bool f64 = c_type == CUDA_R_64F && a_type == CUDA_R_64F && b_type == CUDA_R_64F &&
                   compute == CUBLAS_COMPUTE_64F;
  if (!f32 && !f64) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!wait_for(handle->stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (f64) {
    cblas_dgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), m, n, k, scalar<double>(alpha),
                static_cast<const double*>(a), lda, static_cast<const double*>(b), ldb,
                scalar<double>(beta), static_cast<double*>(c), ldc);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (a_type == CUDA_R_32F) {
    cblas_sgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), m, n, k, scalar<float>(alpha),
                static_cast<const float*>(a), lda, static_cast<const float*>(b), ldb,
                scalar<float>(beta), static_cast<float*>(c), ldc);
    return CUBLAS_STATUS_SUCCESS;
  }
  // bf16: widen the stored matrices (rows x cols as stored, before op).
  const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
  const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
  const std::vector<float> wa = widen_bf16(a, a_rows, a_cols, lda);
  const std::vector<float> wb = widen_bf16(b, b_rows, b_cols, ldb);
  cblas_sgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), m, n, k, scalar<float>(alpha), wa.data(),
              std::max(1, a_rows), wb.data(), std::max(1, b_rows), scalar<float>(beta),
              static_cast<float*>(c), ldc);
  return CUBLAS_STATUS_SUCCESS;
}

// ---- cuSOLVER

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* handle) {
  if (handle == nullptr) return CUSOLVER_STATUS_INVALID_VALUE;
  *handle = new (std::nothrow) cusolverDnContext{};
  return *handle != nullptr ? CUSOLVER_STATUS_SUCCESS : CUSOLVER_STATUS_ALLOC_FAILED;
}

cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnGetStream(cusolverDnHandle_t handle, cudaStream_t* stream) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (stream == nullptr) return CUSOLVER_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUSOLVER_STATUS_SUCCESS;
}

namespace {

// potrf/potri: one LAPACK routine on the stream's data; its info (0, or the
// order of the failing minor) goes to devInfo as cuSOLVER reports it.
template <typename T, typename Routine>
cusolverStatus_t run_factor(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, T* a,
                            int lda, int* dev_info, Routine routine) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!valid_uplo(uplo) || n < 0 || lda < std::max(1, n) || dev_info == nullptr)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (!wait_for(handle->stream)) return CUSOLVER_STATUS_EXECUTION_FAILED;
  // The _work variants: no NaN scan of the input (cuSOLVER does none either).
  *dev_info = n == 0 ? 0 : static_cast<int>(routine(lapack_uplo(uplo), n, a, lda));
  return CUSOLVER_STATUS_SUCCESS;
}

}  // namespace

cusolverStatus_t cusolverDnDpotrf_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, double* /*a*/, int lda, int* lwork) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!valid_uplo(uplo) || n < 0 || lda < std::max(1, n) || lwork == nullptr)
    return CUSOLVER_STATUS_INVALID_VALUE;
  *lwork = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDpotrf(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n,
                                  double* a, int lda, double* /*work*/, int /*lwork*/,
                                  int* dev_info) {
  return run_factor(handle, uplo, n, a, lda, dev_info, [](char u, int ni, double* p, int ld) {
    return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, u, ni, p, ld);
  });
}

cusolverStatus_t cusolverDnDpotri_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, double* a, int lda, int* lwork) {
  return cusolverDnDpotrf_bufferSize(handle, uplo, n, a, lda, lwork);
}

cusolverStatus_t cusolverDnDpotri(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n,
                                  double* a, int lda, double* /*work*/, int /*lwork*/,
                                  int* dev_info) {
  return run_factor(handle, uplo, n, a, lda, dev_info, [](char u, int ni, double* p, int ld) {
    return LAPACKE_dpotri_work(LAPACK_COL_MAJOR, u, ni, p, ld);
  });
}

cusolverStatus_t cusolverDnDgesvd_bufferSize(cusolverDnHandle_t handle, int m, int n, int* lwork) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (m < n || n < 0 || lwork == nullptr) return CUSOLVER_STATUS_INVALID_VALUE;
  *lwork = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDgesvd(cusolverDnHandle_t handle, signed char jobu, signed char jobvt, int m, int n,
                                  double* a, int lda, double* s, double* u, int ldu, double* vt, int ldvt,
                                  double* /*work*/, int /*lwork*/, double* /*rwork*/, int* dev_info) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  const auto job_ok = [](signed char j) { return j == 'S' || j == 'N'; };
  if (!job_ok(jobu) || !job_ok(jobvt) || m < n || n < 0 || lda < std::max(1, m) || dev_info == nullptr)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (!wait_for(handle->stream)) return CUSOLVER_STATUS_EXECUTION_FAILED;
  if (n == 0) {
    *dev_info = 0;
    return CUSOLVER_STATUS_SUCCESS;
  }
  double query = 0;
  lapack_int info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, static_cast<char>(jobu), static_cast<char>(jobvt), m, n, a,
                                        lda, s, u, ldu, vt, ldvt, &query, -1);
  if (info == 0) {
    std::vector<double> work(static_cast<size_t>(query) + 1);
    info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, static_cast<char>(jobu), static_cast<char>(jobvt), m, n, a, lda, s,
                               u, ldu, vt, ldvt, work.data(), static_cast<lapack_int>(work.size()));
  }
  *dev_info = static_cast<int>(info);
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSpotrf_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, float* /*a*/, int lda, int* lwork) {
  return cusolverDnDpotrf_bufferSize(handle, uplo, n, nullptr, lda, lwork);
}

cusolverStatus_t cusolverDnSpotrf(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, float* a,
                                  int lda, float* /*work*/, int /*lwork*/, int* dev_info) {
  return run_factor(handle, uplo, n, a, lda, dev_info, [](char u, int ni, float* p, int ld) {
    return LAPACKE_spotrf_work(LAPACK_COL_MAJOR, u, ni, p, ld);
  });
}

cusolverStatus_t cusolverDnSpotri_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, float* /*a*/, int lda, int* lwork) {
  return cusolverDnDpotrf_bufferSize(handle, uplo, n, nullptr, lda, lwork);
}

cusolverStatus_t cusolverDnSpotri(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, float* a,
                                  int lda, float* /*work*/, int /*lwork*/, int* dev_info) {
  return run_factor(handle, uplo, n, a, lda, dev_info, [](char u, int ni, float* p, int ld) {
    return LAPACKE_spotri_work(LAPACK_COL_MAJOR, u, ni, p, ld);
  });
}

cusolverStatus_t cusolverDnXtrtri_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             cublasDiagType_t diag, int64_t n,
                                             cudaDataType_t type, void* /*a*/, int64_t lda,
                                             size_t* device_bytes, size_t* host_bytes) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!valid_uplo(uplo) || (diag != CUBLAS_DIAG_NON_UNIT && diag != CUBLAS_DIAG_UNIT) || n < 0 ||
      lda < std::max<int64_t>(1, n) || device_bytes == nullptr || host_bytes == nullptr)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (type != CUDA_R_64F && type != CUDA_R_32F) return CUSOLVER_STATUS_NOT_SUPPORTED;
  *device_bytes = 0;
  *host_bytes = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXtrtri(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                  cublasDiagType_t diag, int64_t n, cudaDataType_t type, void* a,
                                  int64_t lda, void* /*device_work*/, size_t /*device_bytes*/,
                                  void* /*host_work*/, size_t /*host_bytes*/, int* dev_info) {
  if (handle == nullptr) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!valid_uplo(uplo) || (diag != CUBLAS_DIAG_NON_UNIT && diag != CUBLAS_DIAG_UNIT) || n < 0 ||
      lda < std::max<int64_t>(1, n) || dev_info == nullptr)
    return CUSOLVER_STATUS_INVALID_VALUE;
  if (type != CUDA_R_64F && type != CUDA_R_32F) return CUSOLVER_STATUS_NOT_SUPPORTED;
  if (n > INT32_MAX || lda > INT32_MAX) return CUSOLVER_STATUS_NOT_SUPPORTED;  // LAPACKE's int
  if (!wait_for(handle->stream)) return CUSOLVER_STATUS_EXECUTION_FAILED;
  const char u = lapack_uplo(uplo), d = diag == CUBLAS_DIAG_UNIT ? 'U' : 'N';
  const auto ni = static_cast<lapack_int>(n), ld = static_cast<lapack_int>(lda);
  lapack_int info = 0;
  if (n > 0) {
    info = type == CUDA_R_64F ? LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, u, d, ni, static_cast<double*>(a), ld)
                              : LAPACKE_strtri_work(LAPACK_COL_MAJOR, u, d, ni, static_cast<float*>(a), ld);
  }
  *dev_info = static_cast<int>(info);
  return CUSOLVER_STATUS_SUCCESS;
}
