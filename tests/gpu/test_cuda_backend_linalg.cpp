// The CUDA backend's cuSOLVER factorizations against the CPU backend (LAPACK):
// Cholesky, triangular inverse and GPTQ's inverse upper factor on random SPD
// matrices of odd sizes, their zeroed triangles, guards around the matrix,
// false on non-SPD input and the same exceptions for NaN or singular input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/support/backend_test_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace streamq::gpu_test {
namespace {

using test::kF64Eps;
using test::relative_error;

// random_spd's matrices have eigenvalues in [1, 5]; each factor (L, L^-1,
// the inverse factor U) is then perturbed by at most ~n eps cond(H) relative
// under backward-stable LAPACK/cuSOLVER algorithms. Two implementations each
// within that of the exact factor differ by twice as much; 10x slack on top
// (about 1e-12 at n = 130, 1e-11 at n = 1000).
double factor_tolerance(int64_t n) { return 2.0 * 10.0 * 5.0 * double(n) * kF64Eps; }

// H = B B^T / n + I: eigenvalues in [1, 5] (tests/kernels/test_backend_cpu.cpp's twin).
std::vector<double> random_spd(std::mt19937_64& rng, int64_t n) {
  const std::vector<double> b = test::random_normal<double>(rng, n * n);
  std::vector<double> h(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < n; ++p) s += b[i * n + p] * b[j * n + p];
      h[i * n + j] = h[j * n + i] = s / double(n) + (i == j ? 1.0 : 0.0);
    }
  return h;
}

void expect_strict_triangle_zero(const std::vector<double>& a, int64_t n, bool upper,
                                 const char* what) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = upper ? i + 1 : 0; j < (upper ? n : i); ++j)
      ASSERT_EQ(a[i * n + j], 0.0) << what << ": strict triangle at (" << i << ", " << j << ")";
}

struct Fixture {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  DevicePool pool{DevicePool::default_limit()};
  std::unique_ptr<CudaBackend> gpu = make_cuda_backend(pool);
};

const int64_t kSizes[] = {1, 2, 7, 33, 130, 257, 1000};

TEST(CudaBackendLinalg, CholeskyMatchesCpu) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  cudaStream_t s = f.gpu->stream();
  for (int64_t n : kSizes) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<double> h = random_spd(rng, n);
    std::vector<double> l_cpu = h;
    ASSERT_TRUE(f.cpu->cholesky_lower(l_cpu.data(), n));
    GuardedBuffer<double> d(h, s);
    ASSERT_TRUE(f.gpu->cholesky_lower(d.get(), n));
    const std::vector<double> l_gpu = d.download(s, "cholesky_lower");
    expect_strict_triangle_zero(l_gpu, n, /*upper=*/true, "L");
    EXPECT_LE(relative_error(l_gpu, l_cpu), factor_tolerance(n));
  }
}

TEST(CudaBackendLinalg, TriangularInverseMatchesCpuAndIgnoresTheUpperTriangle) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  cudaStream_t s = f.gpu->stream();
  for (int64_t n : kSizes) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    std::vector<double> l = random_spd(rng, n);
    ASSERT_TRUE(f.cpu->cholesky_lower(l.data(), n));
    // The contract zeroes the strict upper triangle; garbage there (NaN even)
    // must not reach the result on either backend.
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) l[i * n + j] = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> inv_cpu = l;
    f.cpu->invert_lower_triangular(inv_cpu.data(), n);
    GuardedBuffer<double> d(l, s);
    f.gpu->invert_lower_triangular(d.get(), n);
    const std::vector<double> inv_gpu = d.download(s, "invert_lower_triangular");
    expect_strict_triangle_zero(inv_gpu, n, /*upper=*/true, "L^-1");
    EXPECT_LE(relative_error(inv_gpu, inv_cpu), factor_tolerance(n));
  }
}

TEST(CudaBackendLinalg, InverseUpperFactorMatchesCpu) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  cudaStream_t s = f.gpu->stream();
  for (int64_t n : kSizes) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<double> h = random_spd(rng, n);
    std::vector<double> u_cpu = h;
    ASSERT_TRUE(f.cpu->inverse_upper_factor(u_cpu.data(), n));
    GuardedBuffer<double> d(h, s);
    ASSERT_TRUE(f.gpu->inverse_upper_factor(d.get(), n));
    const std::vector<double> u_gpu = d.download(s, "inverse_upper_factor");
    expect_strict_triangle_zero(u_gpu, n, /*upper=*/false, "U");
    for (int64_t i = 0; i < n; ++i) EXPECT_GT(u_gpu[i * n + i], 0.0) << "diagonal " << i;
    EXPECT_LE(relative_error(u_gpu, u_cpu), factor_tolerance(n));
  }
}

TEST(CudaBackendLinalg, NotPositiveDefiniteReturnsFalseAndTheBackendStaysUsable) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  cudaStream_t s = f.gpu->stream();
  const int64_t n = 33;
  const std::vector<double> good = random_spd(rng, n);
  std::vector<double> negative = good;  // eigenvalues in [-9, -5]
  for (int64_t i = 0; i < n; ++i) negative[i * n + i] -= 10.0;
  std::vector<double> indefinite = good;  // one eigenvalue pushed below zero, late in the sweep
  indefinite[(n - 1) * n + (n - 1)] -= 100.0;
  for (const auto* h : {&negative, &indefinite}) {
    std::vector<double> a = *h;
    ASSERT_FALSE(f.cpu->cholesky_lower(a.data(), n));  // the CPU agrees it is not SPD
    GuardedBuffer<double> d1(*h, s);
    EXPECT_FALSE(f.gpu->cholesky_lower(d1.get(), n));
    d1.download(s, "failed cholesky_lower");  // guards only
    GuardedBuffer<double> d2(*h, s);
    EXPECT_FALSE(f.gpu->inverse_upper_factor(d2.get(), n));
    d2.download(s, "failed inverse_upper_factor");
  }
  // A failure leaves no state behind: the next good matrix factors.
  GuardedBuffer<double> d1(good, s), d2(good, s);
  EXPECT_TRUE(f.gpu->cholesky_lower(d1.get(), n));
  EXPECT_TRUE(f.gpu->inverse_upper_factor(d2.get(), n));
  f.gpu->synchronize();
}

TEST(CudaBackendLinalg, NanInputAndSingularFactorThrowLikeTheCpu) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  cudaStream_t s = f.gpu->stream();
  const int64_t n = 7;
  std::vector<double> h = random_spd(rng, n);
  h[3 * n + 1] = h[1 * n + 3] = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> a = h;
  EXPECT_THROW(f.cpu->cholesky_lower(a.data(), n), InternalError);
  GuardedBuffer<double> d1(h, s), d2(h, s);
  EXPECT_THROW(f.gpu->cholesky_lower(d1.get(), n), InternalError);
  a = h;
  EXPECT_THROW(f.cpu->inverse_upper_factor(a.data(), n), InternalError);
  EXPECT_THROW(f.gpu->inverse_upper_factor(d2.get(), n), InternalError);

  std::vector<double> l = random_spd(rng, n);
  ASSERT_TRUE(f.cpu->cholesky_lower(l.data(), n));
  l[4 * n + 4] = 0.0;  // singular
  a = l;
  EXPECT_THROW(f.cpu->invert_lower_triangular(a.data(), n), InternalError);
  GuardedBuffer<double> d3(l, s);
  try {
    f.gpu->invert_lower_triangular(d3.get(), n);
    ADD_FAILURE() << "a singular factor was inverted";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("diagonal element 4"), std::string::npos) << e.what();
  }
  // Size zero is a no-op that succeeds.
  EXPECT_TRUE(f.gpu->cholesky_lower(nullptr, 0));
  EXPECT_TRUE(f.gpu->inverse_upper_factor(nullptr, 0));
  f.gpu->invert_lower_triangular(nullptr, 0);
  EXPECT_THROW(f.gpu->cholesky_lower(nullptr, -1), InternalError);
  f.gpu->synchronize();
}

}  // namespace
}  // namespace streamq::gpu_test
