// The CUDA backend's float and double GEMM and the bf16 Gram product against
// the CPU backend and a float64 reference, on fresh random inputs with padded
// strides, NaN in the padding (test::random_padded_gemm) and guards around
// every buffer.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/support/backend_test_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace streamq::gpu_test {
namespace {

using test::kF32Eps;
using test::kF64Eps;
using test::relative_error;

// Error normalized by |alpha||op(A)||op(B)| + |beta||C| (the result may
// cancel). Higham's bound for a k-term dot product is (k+2)u with u = eps/2
// for round-to-nearest; (k+2)eps also covers a summation that rounds toward
// zero (tensor-core accumulation in the bf16 Gram). GPU and CPU each stay
// within it of the exact result, so they differ by at most twice that.
double dot_tolerance(int64_t k, double eps) { return static_cast<double>(k + 2) * eps; }

template <typename T>
struct GemmCase {
  Trans ta, tb;
  int64_t m, n, k;
  T beta;
};

template <typename T>
void check_gemm(std::mt19937_64& rng, Backend& cpu, CudaBackend& gpu, const GemmCase<T>& c,
                double eps) {
  const test::PaddedGemm<T> g = test::random_padded_gemm(rng, c.ta, c.tb, c.m, c.n, c.k, c.beta);
  SCOPED_TRACE(g.describe());
  const int64_t m = g.m, n = g.n, k = g.k;

  std::vector<T> c_cpu = g.c;
  cpu.gemm(g.ta, g.tb, m, n, k, g.alpha, g.a.data(), g.lda, g.b.data(), g.ldb, g.beta, c_cpu.data(), g.ldc);

  cudaStream_t s = gpu.stream();
  const GuardedBuffer<T> d_a(g.a, s), d_b(g.b, s);
  GuardedBuffer<T> d_c(g.c, s);
  gpu.gemm(g.ta, g.tb, m, n, k, g.alpha, d_a.get(), g.lda, d_b.get(), g.ldb, g.beta, d_c.get(), g.ldc);
  const std::vector<T> c_gpu = d_c.download(s, "gemm C");

  ASSERT_TRUE(g.padding_untouched(c_gpu));
  const std::vector<T> got = g.dense(c_gpu), cpu_got = g.dense(c_cpu);
  const std::vector<double> cpu_ref(cpu_got.begin(), cpu_got.end());
  const double tol = dot_tolerance(k, eps);
  EXPECT_LE(relative_error(got.data(), g.ref.data(), g.mag.data(), m * n), tol) << "GPU vs float64";
  EXPECT_LE(relative_error(got.data(), cpu_ref.data(), g.mag.data(), m * n), 2 * tol)
      << "GPU vs CPU backend";
}

template <typename T>
void all_transposes_odd_shapes(double eps) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  auto cpu = make_cpu_backend();
  DevicePool pool(DevicePool::default_limit());
  auto gpu = make_cuda_backend(pool);
  for (Trans ta : {Trans::N, Trans::T})
    for (Trans tb : {Trans::N, Trans::T}) {
      for (int64_t m : {1, 7, 33, 130})
        for (int64_t n : {1, 7, 33, 130})
          for (int64_t k : {1, 7, 33, 130}) {
            check_gemm<T>(rng, *cpu, *gpu, {ta, tb, m, n, k, T(0)}, eps);
            check_gemm<T>(rng, *cpu, *gpu, {ta, tb, m, n, k, T(-0.75)}, eps);
          }
      // Large enough for cuBLAS's tiled/split-k kernels; not multiples of 32/128.
      check_gemm<T>(rng, *cpu, *gpu, {ta, tb, 300, 513, 1031, T(0)}, eps);
      check_gemm<T>(rng, *cpu, *gpu, {ta, tb, 257, 129, 2049, T(0.5)}, eps);
    }
}

TEST(CudaBackendGemm, NameIsCuda) {
  DevicePool pool(DevicePool::default_limit());
  EXPECT_EQ(make_cuda_backend(pool)->name(), "cuda");
}

// fp32 with no TF32: ~k eps like the CPU (TF32 would be ~1e-3 and fail).
TEST(CudaBackendGemm, F32AllTransposesOddShapes) { all_transposes_odd_shapes<float>(kF32Eps); }

TEST(CudaBackendGemm, F64AllTransposesOddShapes) { all_transposes_odd_shapes<double>(kF64Eps); }

TEST(CudaBackendGemm, ZeroKScalesCAndBadStrideThrowsLikeTheCpu) {
  DevicePool pool(DevicePool::default_limit());
  auto gpu = make_cuda_backend(pool);
  cudaStream_t s = gpu->stream();
  GuardedBuffer<float> c(6, s);  // all NaN: beta == 0 must clear without reading
  gpu->gemm(Trans::N, Trans::N, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.0f, c.get(), 3);
  for (float x : c.download(s, "k=0, beta=0")) EXPECT_EQ(x, 0.0f);
  const std::vector<double> c0 = {1, -2, 3, -4, 5, -6};
  GuardedBuffer<double> cd(c0, s);
  gpu->gemm(Trans::N, Trans::N, 2, 3, 0, 1.0, nullptr, 1, nullptr, 3, -0.5, cd.get(), 3);
  const std::vector<double> scaled = cd.download(s, "k=0, beta=-0.5");
  for (size_t i = 0; i < c0.size(); ++i) EXPECT_EQ(scaled[i], -0.5 * c0[i]);
  // m == 0 or n == 0: nothing happens, nothing is touched.
  gpu->gemm(Trans::N, Trans::N, 0, 3, 2, 1.0f, nullptr, 2, nullptr, 3, 0.0f, nullptr, 3);
  gpu->synchronize();
  // lda = 2 < k = 3: both backends reject it before touching memory.
  EXPECT_THROW(gpu->gemm(Trans::N, Trans::N, 2, 3, 3, 1.0f, nullptr, 2, nullptr, 3, 0.0f,
                         c.get(), 3),
               InternalError);
  EXPECT_THROW(gpu->gemm(Trans::T, Trans::N, -1, 3, 3, 1.0, nullptr, 3, nullptr, 3, 0.0,
                         cd.get(), 3),
               InternalError);
}

// x[tokens, n] as bf16 bits and as the floats they round to.
struct Bf16Matrix {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};

Bf16Matrix random_bf16(std::mt19937_64& rng, int64_t count) {
  std::normal_distribution<float> normal(0.0f, 2.0f);
  Bf16Matrix x;
  x.bits.resize(count);
  x.values.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    x.bits[i] = f32_to_bf16(normal(rng));
    x.values[i] = bf16_to_f32(x.bits[i]);
  }
  return x;
}

void check_gram(std::mt19937_64& rng, Backend& cpu, CudaBackend& gpu, int64_t n, int64_t tokens,
                float beta) {
  SCOPED_TRACE(testing::Message() << "n=" << n << " tokens=" << tokens << " beta=" << beta);
  const Bf16Matrix x = random_bf16(rng, tokens * n);
  // beta == 0: H starts as NaN and must be overwritten without being read.
  std::vector<float> h0 = beta == 0.0f ? test::poisoned<float>(n * n)
                                       : test::random_normal<float>(rng, n * n, 10.0);
  // Exact products (bf16 x bf16 fits in fp32 and in double), summed in double.
  std::vector<double> ref(n * n), mag(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0, sum_abs = 0.0;
      for (int64_t t = 0; t < tokens; ++t) {
        const double p = double(x.values[t * n + i]) * x.values[t * n + j];
        sum += p;
        sum_abs += std::abs(p);
      }
      const double prior = beta == 0.0f ? 0.0 : double(beta) * h0[i * n + j];
      ref[i * n + j] = sum + prior;
      mag[i * n + j] = sum_abs + std::abs(prior);
    }
  // The CPU twin: an fp32 GEMM of the bf16-rounded values.
  std::vector<float> h_cpu = h0;
  cpu.gemm(Trans::T, Trans::N, n, n, tokens, 1.0f, x.values.data(), n, x.values.data(), n, beta,
           h_cpu.data(), n);
  const std::vector<double> cpu_ref(h_cpu.begin(), h_cpu.end());

  cudaStream_t s = gpu.stream();
  const GuardedBuffer<uint16_t> d_x(x.bits, s);
  GuardedBuffer<float> d_h(h0, s);
  gpu.gram_bf16_accumulate(d_x.get(), n, tokens, d_h.get(), beta);
  const std::vector<float> h_gpu = d_h.download(s, "gram H");
  const double tol = dot_tolerance(tokens, kF32Eps);
  EXPECT_LE(relative_error(h_gpu.data(), ref.data(), mag.data(), n * n), tol) << "GPU vs float64";
  EXPECT_LE(relative_error(h_gpu.data(), cpu_ref.data(), mag.data(), n * n), 2 * tol)
      << "GPU vs CPU backend";
}

TEST(CudaBackendGram, Bf16MatchesFp32AccumulationOfRoundedValues) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  auto cpu = make_cpu_backend();
  DevicePool pool(DevicePool::default_limit());
  auto gpu = make_cuda_backend(pool);
  for (int64_t n : {1, 7, 64, 130, 257})
    for (int64_t tokens : {1, 33, 1000}) {
      check_gram(rng, *cpu, *gpu, n, tokens, 0.0f);
      check_gram(rng, *cpu, *gpu, n, tokens, 1.0f);
    }
  check_gram(rng, *cpu, *gpu, 1024, 4097, 0.0f);
  // No tokens: H = beta * H exactly, and 0 when beta == 0 (not NaN).
  check_gram(rng, *cpu, *gpu, 33, 0, 0.0f);
  check_gram(rng, *cpu, *gpu, 33, 0, 0.5f);
}

TEST(CudaBackendGram, AccumulatingChunksEqualsOneCall) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  DevicePool pool(DevicePool::default_limit());
  auto gpu = make_cuda_backend(pool);
  const int64_t n = 96, tokens = 600;
  const Bf16Matrix x = random_bf16(rng, tokens * n);
  cudaStream_t s = gpu->stream();
  const GuardedBuffer<uint16_t> d_x(x.bits, s);
  GuardedBuffer<float> whole(n * n, s), chunked(n * n, s);
  gpu->gram_bf16_accumulate(d_x.get(), n, tokens, whole.get(), 0.0f);
  gpu->gram_bf16_accumulate(d_x.get(), n, 250, chunked.get(), 0.0f);
  gpu->gram_bf16_accumulate(d_x.get() + 250 * n, n, tokens - 250, chunked.get(), 1.0f);
  const std::vector<float> a = whole.download(s, "one call"), b = chunked.download(s, "chunks");
  const std::vector<double> ref(a.begin(), a.end());
  // Same sums in a different grouping: fp32 rounding of a 600-term sum.
  EXPECT_LE(relative_error(b, ref), dot_tolerance(tokens, kF32Eps));
  EXPECT_THROW(gpu->gram_bf16_accumulate(d_x.get(), -1, tokens, whole.get(), 0.0f), InternalError);
}

}  // namespace
}  // namespace streamq::gpu_test
