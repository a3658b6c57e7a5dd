// One way to check every CUDA runtime, cuBLAS and cuSOLVER call and every
// kernel launch: failures throw streamq::InternalError with file:line, the
// failing expression and the library's error text. Never exits.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <string>

#include "src/core/error.h"

namespace streamq::cuda_detail {

[[noreturn]] inline void throw_cuda_failure(const char* library, const std::string& expr,
                                            const char* file, int line,
                                            const std::string& detail) {
  throw InternalError(std::string(file) + ":" + std::to_string(line) + ": " + library +
                      " call `" + expr + "` failed: " + detail);
}

// cuSOLVER has no status-to-string function.
inline const char* cusolver_status_name(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_MAPPING_ERROR: return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_ZERO_PIVOT: return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_WORKSPACE: return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default: return "unknown cusolverStatus_t";
  }
}

}  // namespace streamq::cuda_detail

#define CUDA_CHECK(expr)                                                                  \
  do {                                                                                    \
    const cudaError_t streamq_cuda_err_ = (expr);                                         \
    if (streamq_cuda_err_ != cudaSuccess) {                                               \
      cudaGetLastError(); /* clear it, or the next launch check would report it again */  \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "CUDA", #expr, __FILE__, __LINE__,                                              \
          std::string(cudaGetErrorName(streamq_cuda_err_)) + " (" +                       \
              cudaGetErrorString(streamq_cuda_err_) + ")");                               \
    }                                                                                     \
  } while (0)

// After every <<<...>>> launch, naming the kernel: catches bad launch
// configurations at once (faults inside the kernel surface at the next
// synchronizing call, which is CUDA_CHECKed too).
#define CUDA_CHECK_LAUNCH(kernel_desc)                                                    \
  do {                                                                                    \
    const cudaError_t streamq_cuda_err_ = cudaGetLastError();                             \
    if (streamq_cuda_err_ != cudaSuccess) {                                               \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "CUDA", std::string("launch of ") + (kernel_desc), __FILE__, __LINE__,          \
          std::string(cudaGetErrorName(streamq_cuda_err_)) + " (" +                       \
              cudaGetErrorString(streamq_cuda_err_) + ")");                               \
    }                                                                                     \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                \
  do {                                                                                    \
    const cublasStatus_t streamq_cublas_st_ = (expr);                                     \
    if (streamq_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                    \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "cuBLAS", #expr, __FILE__, __LINE__,                                            \
          std::string(cublasGetStatusName(streamq_cublas_st_)) + " (" +                   \
              cublasGetStatusString(streamq_cublas_st_) + ")");                           \
    }                                                                                     \
  } while (0)

#define CUSOLVER_CHECK(expr)                                                              \
  do {                                                                                    \
    const cusolverStatus_t streamq_cusolver_st_ = (expr);                                 \
    if (streamq_cusolver_st_ != CUSOLVER_STATUS_SUCCESS) {                                \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "cuSOLVER", #expr, __FILE__, __LINE__,                                          \
          ::streamq::cuda_detail::cusolver_status_name(streamq_cusolver_st_));            \
    }                                                                                     \
  } while (0)

// The same three checks with the op and its shapes in the message, for calls
// whose failure means little without them (a GEMM, a factorization):
// `context` is a std::string (or const char*) built only on failure.
#define CUDA_CHECK_CTX(expr, context)                                                     \
  do {                                                                                    \
    const cudaError_t streamq_cuda_err_ = (expr);                                         \
    if (streamq_cuda_err_ != cudaSuccess) {                                               \
      cudaGetLastError();                                                                 \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "CUDA", std::string(#expr) + " in " + (context), __FILE__, __LINE__,            \
          std::string(cudaGetErrorName(streamq_cuda_err_)) + " (" +                       \
              cudaGetErrorString(streamq_cuda_err_) + ")");                               \
    }                                                                                     \
  } while (0)

#define CUBLAS_CHECK_CTX(expr, context)                                                   \
  do {                                                                                    \
    const cublasStatus_t streamq_cublas_st_ = (expr);                                     \
    if (streamq_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                    \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "cuBLAS", std::string(#expr) + " in " + (context), __FILE__, __LINE__,          \
          std::string(cublasGetStatusName(streamq_cublas_st_)) + " (" +                   \
              cublasGetStatusString(streamq_cublas_st_) + ")");                           \
    }                                                                                     \
  } while (0)

#define CUSOLVER_CHECK_CTX(expr, context)                                                 \
  do {                                                                                    \
    const cusolverStatus_t streamq_cusolver_st_ = (expr);                                 \
    if (streamq_cusolver_st_ != CUSOLVER_STATUS_SUCCESS) {                                \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "cuSOLVER", std::string(#expr) + " in " + (context), __FILE__, __LINE__,        \
          ::streamq::cuda_detail::cusolver_status_name(streamq_cusolver_st_));            \
    }                                                                                     \
  } while (0)

// cuSOLVER reports numerical failure through devInfo, not the status: pass the
// value copied back to the host. Negative means a bad argument (a bug: throws);
// positive is returned for the caller to handle (e.g. "not positive definite").
#define CUSOLVER_CHECK_INFO(host_info, what)                                              \
  ([&]() -> int {                                                                         \
    const int streamq_info_ = (host_info);                                                \
    if (streamq_info_ < 0) {                                                              \
      ::streamq::cuda_detail::throw_cuda_failure(                                         \
          "cuSOLVER", what, __FILE__, __LINE__,                                           \
          "devInfo = " + std::to_string(streamq_info_) + " (illegal argument)");          \
    }                                                                                     \
    return streamq_info_;                                                                 \
  }())
