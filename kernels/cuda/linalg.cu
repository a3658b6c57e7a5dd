// cuSOLVER factorizations for row-major matrices (see linalg.cuh). As on the
// CPU, a row-major matrix read as column-major is its transpose, so the
// column-major routines run with the triangle flipped: row-major lower ==
// column-major upper. No transposed copy is ever made.
#include "kernels/cuda/linalg.cuh"

#include <algorithm>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

// --- row-major triangle kernels; a grid-stride loop over the n*n elements

// Zeros a[i][j] for j > i (upper) or j < i (lower).
template <typename T>
__global__ void zero_strict_triangle_kernel(T* a, int64_t n, bool upper) {
  const int64_t total = n * n;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t i = idx / n, j = idx % n;
    if (upper ? j > i : j < i) a[idx] = T(0);
  }
}

// a[i][j] = a[j][i] for j > i: reads only the lower triangle and writes only
// the strict upper, so no element is both read and written.
template <typename T>
__global__ void mirror_lower_to_upper_kernel(T* a, int64_t n) {
  const int64_t total = n * n;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t i = idx / n, j = idx % n;
    if (j > i) a[idx] = a[j * n + i];
  }
}

// *flag = 1 when the row-major lower triangle (diagonal included) holds a NaN:
// the triangle LAPACKE's NaN check reads for the CPU backend's calls.
template <typename T>
__global__ void flag_nan_lower_kernel(const T* a, int64_t n, int* flag) {
  const int64_t total = n * n;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t i = idx / n, j = idx % n;
    if (j <= i && isnan(a[idx])) *flag = 1;  // every writer stores the same value
  }
}

// Row-major in[rows, cols] -> out[cols, rows].
__global__ void transpose_kernel(const double* in, double* out, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t i = idx / cols, j = idx % cols;
    out[j * rows + i] = in[idx];
  }
}

// *flag = 1 when any of a[count] is NaN.
__global__ void flag_nan_kernel(const double* a, int64_t count, int* flag) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < count;
       idx += stride)
    if (isnan(a[idx])) *flag = 1;  // every writer stores the same value
}

struct Call {
  cusolverDnHandle_t handle;
  SolverWorkspace& ws;
  cudaStream_t stream;
  int64_t n;
  int ni;
  std::string context;  // "cholesky_lower(n=4096)"
};

Call make_call(cusolverDnHandle_t handle, SolverWorkspace& ws, const char* op, int64_t n) {
  const int ni = cuda_detail::checked_int(n, op, "n");
  cudaStream_t stream = nullptr;
  CUSOLVER_CHECK(cusolverDnGetStream(handle, &stream));
  return Call{handle, ws, stream, n, ni, std::string(op) + "(n=" + std::to_string(n) + ")"};
}

template <typename T>
void zero_strict_triangle(const Call& c, T* a, bool upper) {
  STREAMQ_LAUNCH(zero_strict_triangle_kernel<T>, cuda_detail::elementwise_blocks(c.n * c.n),
                 cuda_detail::kElementwiseBlock, 0, c.stream)(a, c.n, upper);
  CUDA_CHECK_LAUNCH("zero_strict_triangle_kernel in " + c.context);
}

template <typename T>
void mirror_lower_to_upper(const Call& c, T* a) {
  STREAMQ_LAUNCH(mirror_lower_to_upper_kernel<T>, cuda_detail::elementwise_blocks(c.n * c.n),
                 cuda_detail::kElementwiseBlock, 0, c.stream)(a, c.n);
  CUDA_CHECK_LAUNCH("mirror_lower_to_upper_kernel in " + c.context);
}

// Clears both flags, then raises the NaN flag if the input's lower triangle
// has a NaN; read back by finish_step() together with devInfo.
template <typename T>
void start_checked(const Call& c, const T* a) {
  CUDA_CHECK_CTX(cudaMemsetAsync(c.ws.flags(), 0, 2 * sizeof(int), c.stream), c.context);
  STREAMQ_LAUNCH(flag_nan_lower_kernel<T>, cuda_detail::elementwise_blocks(c.n * c.n),
                 cuda_detail::kElementwiseBlock, 0, c.stream)(a, c.n, c.ws.flags() + 1);
  CUDA_CHECK_LAUNCH("flag_nan_lower_kernel in " + c.context);
}

void start_unchecked(const Call& c) {
  CUDA_CHECK_CTX(cudaMemsetAsync(c.ws.flags(), 0, 2 * sizeof(int), c.stream), c.context);
}

// Waits for the step and returns its devInfo: throws on a NaN input or a
// negative devInfo (a bad argument), returns a positive one to the caller.
int finish_step(const Call& c, const char* routine) {
  int host[2] = {0, 0};
  CUDA_CHECK_CTX(cudaMemcpyAsync(host, c.ws.flags(), sizeof host, cudaMemcpyDeviceToHost,
                                 c.stream),
                 c.context);
  CUDA_CHECK_CTX(cudaStreamSynchronize(c.stream), c.context);
  if (host[1] != 0) {
    throw InternalError(c.context + ": the " + std::to_string(c.n) + "x" + std::to_string(c.n) +
                        " input holds a NaN (the CPU backend rejects it the same way)");
  }
  return CUSOLVER_CHECK_INFO(host[0], std::string(routine) + " in " + c.context);
}

// One cuSOLVER step (potrf or potri, float or double) on the column-major
// `uplo` triangle (the other one, row-major): its workspace from the pool,
// devInfo in flags[0].
template <typename T, typename BufferSize, typename Routine>
void solver_step(const Call& c, cublasFillMode_t uplo, T* a, const char* name, BufferSize buffer_size,
                 Routine routine) {
  const std::string where = std::string(name) + " in " + c.context;  // "cusolverDnSpotrf in inverse_upper_factor(n=..)"
  int lwork = 0;
  CUSOLVER_CHECK_CTX(buffer_size(c.handle, uplo, c.ni, a, c.ni, &lwork), where);
  auto* work = static_cast<T*>(
      c.ws.device(static_cast<size_t>(lwork) * sizeof(T), c.stream, "cuSOLVER workspace of " + where));
  CUSOLVER_CHECK_CTX(routine(c.handle, uplo, c.ni, a, c.ni, work, lwork, c.ws.flags()), where);
}

void potrf(const Call& c, cublasFillMode_t uplo, double* a) {
  solver_step(c, uplo, a, "cusolverDnDpotrf", cusolverDnDpotrf_bufferSize, cusolverDnDpotrf);
}
void potrf(const Call& c, cublasFillMode_t uplo, float* a) {
  solver_step(c, uplo, a, "cusolverDnSpotrf", cusolverDnSpotrf_bufferSize, cusolverDnSpotrf);
}
void potri(const Call& c, cublasFillMode_t uplo, double* a) {
  solver_step(c, uplo, a, "cusolverDnDpotri", cusolverDnDpotri_bufferSize, cusolverDnDpotri);
}
void potri(const Call& c, cublasFillMode_t uplo, float* a) {
  solver_step(c, uplo, a, "cusolverDnSpotri", cusolverDnSpotri_bufferSize, cusolverDnSpotri);
}

}  // namespace

SolverWorkspace::SolverWorkspace(DevicePool& pool)
    : pool_(pool), flags_(pool.allocate<int>(2, "cuSOLVER devInfo and NaN flag")) {}

void* SolverWorkspace::device(size_t bytes, cudaStream_t stream, const std::string& what) {
  // Never hand cuSOLVER a null workspace, even when it asks for none.
  bytes = std::max<size_t>(bytes, 256);
  if (device_.bytes() < bytes) {
    // The old block may still be in use by work queued on the stream.
    CUDA_CHECK_CTX(cudaStreamSynchronize(stream), what);
    device_.reset();  // first, so the pool never holds old and new at once
    device_ = pool_.allocate<unsigned char>(bytes, what);
  }
  return device_.get();
}

void* SolverWorkspace::host(size_t bytes) {
  if (host_.size() < bytes) host_.resize(bytes);
  return host_.data();
}

bool cuda_cholesky_lower(cusolverDnHandle_t handle, SolverWorkspace& ws, double* a, int64_t n) {
  const Call c = make_call(handle, ws, "cholesky_lower", n);
  if (n == 0) return true;
  start_checked(c, a);
  potrf(c, CUBLAS_FILL_MODE_UPPER, a);
  if (finish_step(c, "cusolverDnDpotrf") > 0) return false;
  zero_strict_triangle(c, a, /*upper=*/true);
  return true;
}

void cuda_invert_lower_triangular(cusolverDnHandle_t handle, SolverWorkspace& ws, double* l,
                                  int64_t n) {
  const Call c = make_call(handle, ws, "invert_lower_triangular", n);
  if (n == 0) return;
  zero_strict_triangle(c, l, /*upper=*/true);
  start_checked(c, l);
  size_t device_bytes = 0, host_bytes = 0;
  CUSOLVER_CHECK_CTX(cusolverDnXtrtri_bufferSize(handle, CUBLAS_FILL_MODE_UPPER,
                                                 CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, l, n,
                                                 &device_bytes, &host_bytes),
                     c.context);
  void* device_work = ws.device(device_bytes, c.stream, "cuSOLVER trtri workspace of " + c.context);
  void* host_work = ws.host(std::max<size_t>(host_bytes, 1));
  CUSOLVER_CHECK_CTX(cusolverDnXtrtri(handle, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n,
                                      CUDA_R_64F, l, n, device_work, device_bytes, host_work,
                                      host_bytes, ws.flags()),
                     c.context);
  const int info = finish_step(c, "cusolverDnXtrtri");
  if (info > 0) {
    throw InternalError("invert_lower_triangular: the " + std::to_string(n) + "x" +
                        std::to_string(n) + " factor is singular (diagonal element " +
                        std::to_string(info - 1) + " is zero)");
  }
  // Why: the contract promises a zero strict upper triangle; cuSOLVER documents the
  // other triangle as untouched, but in-place trtri implementations may use it as scratch.
  zero_strict_triangle(c, l, /*upper=*/true);
}

template <typename T>
bool inverse_upper_factor_impl(cusolverDnHandle_t handle, SolverWorkspace& ws, T* h, int64_t n) {
  const Call c = make_call(handle, ws, sizeof(T) == 8 ? "inverse_upper_factor" : "inverse_upper_factor_f32", n);
  if (n == 0) return true;
  // L = chol(H), row-major lower.
  start_checked(c, h);
  potrf(c, CUBLAS_FILL_MODE_UPPER, h);
  if (finish_step(c, sizeof(T) == 8 ? "cusolverDnDpotrf(H)" : "cusolverDnSpotrf(H)") > 0) return false;
  // H^-1 from L, into the row-major lower triangle only.
  start_unchecked(c);
  potri(c, CUBLAS_FILL_MODE_UPPER, h);
  if (finish_step(c, sizeof(T) == 8 ? "cusolverDnDpotri" : "cusolverDnSpotri") > 0) return false;
  // The next factorization reads the row-major upper triangle.
  mirror_lower_to_upper(c, h);
  // U = chol(H^-1), row-major upper, so H^-1 = U^T U.
  start_unchecked(c);
  potrf(c, CUBLAS_FILL_MODE_LOWER, h);
  if (finish_step(c, sizeof(T) == 8 ? "cusolverDnDpotrf(H^-1)" : "cusolverDnSpotrf(H^-1)") > 0) return false;
  zero_strict_triangle(c, h, /*upper=*/false);
  return true;
}

bool cuda_inverse_upper_factor(cusolverDnHandle_t handle, SolverWorkspace& ws, double* h, int64_t n) {
  return inverse_upper_factor_impl(handle, ws, h, n);
}

void cuda_svd(cusolverDnHandle_t handle, SolverWorkspace& ws, double* a, int64_t m, int64_t n, double* s,
              double* u, double* vt) {
  const std::string context = "svd(" + std::to_string(m) + "x" + std::to_string(n) + ")";
  const int mi = cuda_detail::checked_int(m, "svd", "m"), ni = cuda_detail::checked_int(n, "svd", "n");
  if (m == 0 || n == 0) return;
  cudaStream_t stream = nullptr;
  CUSOLVER_CHECK(cusolverDnGetStream(handle, &stream));
  const int r = std::min(mi, ni);
  auto transpose = [&](const double* in, double* out, int64_t rows, int64_t cols) {
    STREAMQ_LAUNCH(transpose_kernel, cuda_detail::elementwise_blocks(rows * cols), cuda_detail::kElementwiseBlock, 0,
                   stream)(in, out, rows, cols);
    CUDA_CHECK_LAUNCH("transpose_kernel in " + context);
  };
  CUDA_CHECK_CTX(cudaMemsetAsync(ws.flags(), 0, 2 * sizeof(int), stream), context);
  STREAMQ_LAUNCH(flag_nan_kernel, cuda_detail::elementwise_blocks(m * n), cuda_detail::kElementwiseBlock, 0,
                 stream)(a, m * n, ws.flags() + 1);
  CUDA_CHECK_LAUNCH("flag_nan_kernel in " + context);
  // gesvd's problem, column-major rows x cols with rows >= cols. n >= m: the
  // row-major a is already a^T column-major (n x m), whose U (n x r) is vt
  // row-major and whose V^T (r x m) is u row-major: written in place. m > n:
  // a transposed copy is a column-major (m x n); its U and V^T come back
  // column-major and are transposed into u and vt.
  const bool direct = n >= m;
  const int rows = direct ? ni : mi, cols = direct ? mi : ni;
  int lwork = 0;
  CUSOLVER_CHECK_CTX(cusolverDnDgesvd_bufferSize(handle, rows, cols, &lwork), context);
  const size_t work_elems = static_cast<size_t>(std::max(lwork, 1));
  const size_t rwork_elems = static_cast<size_t>(std::max(r - 1, 1));
  const size_t copy_elems = direct ? 0 : static_cast<size_t>(m * n + m * r + r * n);
  auto* scratch = static_cast<double*>(ws.device((work_elems + rwork_elems + copy_elems) * sizeof(double), stream,
                                                 "cuSOLVER gesvd workspace of " + context));
  double* work = scratch;
  double* rwork = work + work_elems;
  double* acm = rwork + rwork_elems;  // m > n: a column-major, then its U and V^T
  double* ucm = acm + (direct ? 0 : m * n);
  double* vtcm = ucm + (direct ? 0 : m * r);
  if (!direct) transpose(a, acm, m, n);
  signed char job = 'S';
  if (direct) {
    CUSOLVER_CHECK_CTX(cusolverDnDgesvd(handle, job, job, rows, cols, a, rows, s, vt, rows, u, r, work, lwork, rwork,
                                        ws.flags()),
                       context);
  } else {
    CUSOLVER_CHECK_CTX(cusolverDnDgesvd(handle, job, job, rows, cols, acm, rows, s, ucm, rows, vtcm, r, work, lwork,
                                        rwork, ws.flags()),
                       context);
    transpose(ucm, u, r, m);   // column-major U (m x r) is row-major [r, m]
    transpose(vtcm, vt, n, r);  // column-major V^T (r x n) is row-major [n, r]
  }
  int host[2] = {0, 0};
  CUDA_CHECK_CTX(cudaMemcpyAsync(host, ws.flags(), sizeof host, cudaMemcpyDeviceToHost, stream), context);
  CUDA_CHECK_CTX(cudaStreamSynchronize(stream), context);
  if (host[1] != 0) throw InternalError(context + ": the input holds a NaN (the CPU backend rejects it the same way)");
  const int info = CUSOLVER_CHECK_INFO(host[0], "cusolverDnDgesvd in " + context);
  if (info > 0)
    throw InternalError(context + ": cusolverDnDgesvd did not converge (" + std::to_string(info) +
                        " superdiagonals left)");
}
bool cuda_inverse_upper_factor(cusolverDnHandle_t handle, SolverWorkspace& ws, float* h, int64_t n) {
  return inverse_upper_factor_impl(handle, ws, h, n);
}

}  // namespace streamq
