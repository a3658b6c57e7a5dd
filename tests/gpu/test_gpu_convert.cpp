// The CUDA conversion and elementwise kernels against their CPU twins:
// f32 -> bf16 on every one of the 2^32 float bit patterns, SwiGLU on random
// and special inputs. Outputs are poisoned and guarded first.
#include <gtest/gtest.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "src/core/dtype.h"
#include "kernels/backend.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_raii.h"
#include "kernels/cuda/elementwise.cuh"
#include "tests/gpu/gpu_test_util.h"

namespace streamq {
namespace {

using gpu_test::download;
using gpu_test::fresh_seed;
using gpu_test::guard_intact;
using gpu_test::kGuard;
using gpu_test::kPoisonByte;
using gpu_test::poisoned_device;
using gpu_test::upload;

// Both sides compute g / (1 + exp(-g)) * up with identically rounded float
// ops; only exp differs (CUDA expf <= 2 ulp, glibc <= 1 ulp), so a few ulp.
constexpr double kSwigluGpuVsCpuTol = 8 * std::numeric_limits<float>::epsilon();

TEST(GpuConvert, F32ToBf16MatchesCpuOnAllBitPatterns) {
  CudaStream stream;
  constexpr size_t kChunk = size_t{1} << 24;
  std::vector<uint32_t> bits(kChunk);
  DeviceBuffer<float> d_in(kChunk);
  DeviceBuffer<uint16_t> d_out(kChunk + kGuard);
  for (uint64_t base = 0; base < (uint64_t{1} << 32); base += kChunk) {
    for (size_t i = 0; i < kChunk; ++i) bits[i] = static_cast<uint32_t>(base + i);
    CUDA_CHECK(cudaMemcpyAsync(d_in.get(), bits.data(), d_in.bytes(), cudaMemcpyHostToDevice,
                               stream.get()));
    CUDA_CHECK(cudaMemsetAsync(d_out.get(), kPoisonByte, d_out.bytes(), stream.get()));
    cuda_f32_to_bf16(stream.get(), d_in.get(), d_out.get(), kChunk);
    const std::vector<uint16_t> out = download(d_out, stream.get());
    ASSERT_TRUE(guard_intact(out, kChunk)) << "wrote past n in chunk at " << base;
    // Index of the first mismatch, or kChunk.
    const size_t first_bad = tbb::parallel_reduce(
        tbb::blocked_range<size_t>(0, kChunk), kChunk,
        [&](const tbb::blocked_range<size_t>& r, size_t best) {
          for (size_t i = r.begin(); i < r.end() && i < best; ++i) {
            float f;
            std::memcpy(&f, &bits[i], 4);
            if (out[i] != f32_to_bf16(f)) return i;
          }
          return best;
        },
        [](size_t a, size_t b) { return a < b ? a : b; });
    if (first_bad != kChunk) {
      float f;
      std::memcpy(&f, &bits[first_bad], 4);
      FAIL() << std::hex << "f32 bits 0x" << bits[first_bad] << ": gpu 0x" << out[first_bad]
             << " cpu 0x" << f32_to_bf16(f);
    }
  }
}

TEST(GpuConvert, F32ToBf16EmptyAndOddSizes) {
  CudaStream stream;
  cuda_f32_to_bf16(stream.get(), nullptr, nullptr, 0);  // no launch, no error
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("replay with STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1e3f);
  for (size_t n : {size_t{1}, size_t{7}, size_t{255}, size_t{257}, size_t{(1 << 24) + 3}}) {
    std::vector<float> in(n);
    for (auto& x : in) x = dist(rng);
    const DeviceBuffer<float> d_in = upload(in, stream.get());
    DeviceBuffer<uint16_t> d_out = poisoned_device<uint16_t>(n + kGuard, stream.get());
    cuda_f32_to_bf16(stream.get(), d_in.get(), d_out.get(), static_cast<int64_t>(n));
    const std::vector<uint16_t> out = download(d_out, stream.get());
    ASSERT_TRUE(guard_intact(out, n)) << "n=" << n;
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], f32_to_bf16(in[i])) << "n=" << n << " i=" << i;
  }
}

TEST(GpuSwiglu, MatchesCpuBackend) {
  CudaStream stream;
  auto cpu = make_cpu_backend();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("replay with STREAMQ_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f, -0.0f, 100.0f, -100.0f, 88.7f, -88.7f, inf, -inf, NAN, 1e-40f};
  for (size_t n : {size_t{1}, size_t{10}, size_t{1000}, size_t{(1 << 22) + 5}}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    std::vector<float> gate(n), up(n);
    for (size_t i = 0; i < n; ++i) {
      gate[i] = i < n / 2 && i < std::size(specials) ? specials[i] : dist(rng);
      up[i] = dist(rng);
    }
    std::vector<float> want(n, NAN);
    cpu->swiglu(gate.data(), up.data(), want.data(), static_cast<int64_t>(n));
    const DeviceBuffer<float> d_gate = upload(gate, stream.get()), d_up = upload(up, stream.get());
    DeviceBuffer<float> d_out = poisoned_device<float>(n + kGuard, stream.get());
    cuda_swiglu(stream.get(), d_gate.get(), d_up.get(), d_out.get(), static_cast<int64_t>(n));
    const std::vector<float> got = download(d_out, stream.get());
    ASSERT_TRUE(guard_intact(got, n));
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; ++i) {
      // Non-finite results must agree exactly (NaN with NaN, inf with inf).
      if (!std::isfinite(want[i]) || !std::isfinite(got[i])) {
        ASSERT_TRUE((std::isnan(want[i]) && std::isnan(got[i])) || want[i] == got[i])
            << "i=" << i << " gate=" << gate[i] << " cpu=" << want[i] << " gpu=" << got[i];
        continue;
      }
      diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
      norm += double(want[i]) * want[i];
    }
    EXPECT_LE(std::sqrt(diff / norm), kSwigluGpuVsCpuTol);

    // In place, out aliasing gate: same bits as the separate output.
    CUDA_CHECK(cudaMemcpyAsync(d_gate.get(), gate.data(), n * 4, cudaMemcpyHostToDevice, stream.get()));
    cuda_swiglu(stream.get(), d_gate.get(), d_up.get(), d_gate.get(), static_cast<int64_t>(n));
    const std::vector<float> in_place = download(d_gate, stream.get());
    ASSERT_EQ(std::memcmp(in_place.data(), got.data(), n * 4), 0);
  }
}

TEST(GpuCheck, BadCallThrowsInternalErrorWithContext) {
  try {
    CUDA_CHECK(cudaMemcpy(nullptr, reinterpret_cast<void*>(1), 16, cudaMemcpyHostToDevice));
    FAIL() << "expected a throw";
  } catch (const InternalError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test_gpu_convert.cpp:"), std::string::npos) << what;
    EXPECT_NE(what.find("cudaMemcpy(nullptr"), std::string::npos) << what;
  }
  // The failed call must not linger as the "last error" of a later launch.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_THROW(cuda_swiglu(nullptr, nullptr, nullptr, nullptr, -1), InternalError);
  EXPECT_THROW(CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE), InternalError);
  EXPECT_THROW(CUSOLVER_CHECK(CUSOLVER_STATUS_EXECUTION_FAILED), InternalError);
  EXPECT_THROW(CUSOLVER_CHECK_INFO(-3, "potrf devInfo"), InternalError);
  EXPECT_EQ(CUSOLVER_CHECK_INFO(2, "potrf devInfo"), 2);  // not PD: the caller decides
}

}  // namespace
}  // namespace streamq
