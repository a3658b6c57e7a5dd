// The budgeted device pool on a real GPU: refusals over the limit, the
// high-water mark, a device too full for a request under the limit, usable
// memory, and the CUDA backend taking its workspaces from the pool.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_pool.h"
#include "tests/support/backend_test_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace streamq::gpu_test {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(DevicePool, OverTheLimitThrowsAClearBudgetError) {
  DevicePool pool(8 * kMiB);
  PoolBuffer<float> held = pool.allocate<float>(5 * kMiB / 4, "held activations");
  EXPECT_EQ(pool.in_use(), 5 * kMiB);
  try {
    pool.allocate<double>(4 * kMiB / 8, "Hessian of layer 3 mlp.down_proj");
    FAIL() << "granted past the limit";
  } catch (const BudgetError& e) {
    const std::string m = e.what();
    for (const char* part : {"Hessian of layer 3 mlp.down_proj", "4.00 MiB", "5.00 MiB",
                             "8.00 MiB", "3.00 MiB", "--gpu-mem-limit"})
      EXPECT_TRUE(contains(m, part)) << part << " missing from: " << m;
  }
  EXPECT_EQ(pool.in_use(), 5 * kMiB);  // the refusal took nothing
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(DevicePool, HighWaterIsThePeakAndMemoryIsUsable) {
  DevicePool pool(64 * kMiB);
  {
    PoolBuffer<unsigned char> a = pool.allocate<unsigned char>(3 * kMiB, "a");
    PoolBuffer<unsigned char> b = pool.allocate<unsigned char>(10 * kMiB, "b");  // 13
    a.reset();                                                                 // 10
    PoolBuffer<unsigned char> c = pool.allocate<unsigned char>(7 * kMiB, "c");  // 17: peak
    b.reset();                                                                 // 7
    PoolBuffer<unsigned char> d = pool.allocate<unsigned char>(1 * kMiB + 5, "d");
    EXPECT_EQ(pool.in_use(), 8 * kMiB + 5);
    // The blocks are real device memory.
    CUDA_CHECK(cudaMemset(c.get(), 0x5A, c.bytes()));
    std::vector<unsigned char> back(c.bytes());
    CUDA_CHECK(cudaMemcpy(back.data(), c.get(), c.bytes(), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < back.size(); i += 4099) ASSERT_EQ(back[i], 0x5A) << i;
  }
  EXPECT_EQ(pool.high_water(), 17 * kMiB);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(DevicePool, DeviceFullUnderTheLimitIsABudgetErrorToo) {
  DevicePool pool(UINT64_MAX);
  try {
    pool.allocate<unsigned char>(uint64_t{1} << 50, "an impossible petabyte");
    FAIL() << "cudaMalloc of 1 PiB succeeded";
  } catch (const BudgetError& e) {
    EXPECT_TRUE(contains(e.what(), "an impossible petabyte")) << e.what();
    EXPECT_TRUE(contains(e.what(), "no room")) << e.what();
  }
  EXPECT_EQ(pool.in_use(), 0u);
  // The failed cudaMalloc must not be reported by the next launch check.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(DevicePool, DefaultLimitLeavesTheMargin) {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const uint64_t limit = DevicePool::default_limit();
  EXPECT_LE(limit + DevicePool::kDefaultMarginBytes, uint64_t{free_bytes} + 64 * kMiB);
  EXPECT_GT(limit, 0u) << "less than the margin free on this GPU";
  EXPECT_EQ(DevicePool::default_limit(UINT64_MAX), 0u);
}

TEST(DevicePool, CudaBackendAllocatesOnlyThroughThePool) {
  {
    DevicePool tiny(1 * kMiB);
    try {
      make_cuda_backend(tiny);
      FAIL() << "a backend fit in 1 MiB";
    } catch (const BudgetError& e) {
      EXPECT_TRUE(contains(e.what(), "cuBLAS workspace")) << e.what();
    }
    EXPECT_EQ(tiny.in_use(), 0u);
  }
  DevicePool pool(DevicePool::default_limit());
  {
    auto gpu = make_cuda_backend(pool);
    const uint64_t baseline = pool.in_use();
    EXPECT_GE(baseline, 32 * kMiB);  // the cuBLAS workspace
    STREAMQ_GPU_SEEDED_RNG(rng);
    const int64_t n = 1000;
    std::vector<double> h = test::random_normal<double>(rng, n * n);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < i; ++j) h[j * n + i] = h[i * n + j];
      h[i * n + i] = std::abs(h[i * n + i]) + 2.0 * n;  // diagonally dominant: SPD
    }
    GuardedBuffer<double> d(h, gpu->stream());
    ASSERT_TRUE(gpu->inverse_upper_factor(d.get(), n));
    gpu->synchronize();
    // The cuSOLVER workspace came from the pool and is kept for the next call.
    EXPECT_GT(pool.in_use(), baseline);
    EXPECT_GE(pool.high_water(), pool.in_use());
  }
  EXPECT_EQ(pool.in_use(), 0u);  // the backend gave everything back
}

}  // namespace
}  // namespace streamq::gpu_test
