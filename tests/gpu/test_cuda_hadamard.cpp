// The CUDA Hadamard transform against its CPU twin bit for bit (both run the
// same float operations in the same order; kernels/cpu/hadamard.cpp), on
// fresh random rows, forward and inverse, with and without signs; shapes the
// kernels do not take are refused with the reason.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_raii.h"
#include "kernels/cuda/hadamard.cuh"
#include "src/core/error.h"
#include "src/methods/hadamard.h"
#include "tests/gpu/gpu_test_util.h"

namespace streamq {
namespace {

using gpu_test::download;
using gpu_test::upload;

TEST(CudaHadamard, BitIdenticalToTheCpuTwin) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  std::normal_distribution<float> nd;
  CudaStream stream;
  // SmolLM2's 576 and 1536, a 2^k width, a Paley order, one segment of 1.
  for (const int64_t n : {int64_t{576}, int64_t{1536}, int64_t{4096}, int64_t{20 * 16}, int64_t{12}}) {
    const HadamardSplit split = hadamard_split(n);
    ASSERT_GT(split.m, 0) << n;
    const std::vector<int8_t> h8 = hadamard_matrix(split.m);
    const std::vector<float> hm(h8.begin(), h8.end());
    std::vector<float> signs(static_cast<size_t>(n));
    for (float& s : signs) s = (rng() & 1) ? 1.0f : -1.0f;
    const int64_t rows = 3;
    std::vector<float> x(static_cast<size_t>(rows * n));
    for (float& v : x) v = nd(rng);
    const DeviceBuffer<float> dhm = upload(hm, stream.get()), dsigns = upload(signs, stream.get());
    for (int variant = 0; variant < 4; ++variant) {
      const bool with_signs = variant & 1, inverse = variant & 2;
      SCOPED_TRACE("n=" + std::to_string(n) + (with_signs ? " signs" : "") + (inverse ? " inverse" : ""));
      std::vector<float> want = x;
      cpu::hadamard_rows(want.data(), rows, n, hm.data(), split.m, with_signs ? signs.data() : nullptr, inverse);
      const DeviceBuffer<float> dx = upload(x, stream.get());
      cuda_hadamard_rows(stream.get(), dx.get(), rows, n, dhm.get(), split.m, with_signs ? dsigns.get() : nullptr,
                         inverse);
      const std::vector<float> got = download(dx, stream.get());
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
    }
  }
}

TEST(CudaHadamard, RefusesWhatItCannotDo) {
  CudaStream stream;
  // A 16384 segment needs 64 KiB of shared memory: refused by name.
  try {
    cuda_hadamard_rows(stream.get(), nullptr, 1, 16384, nullptr, 1, nullptr, false);
    FAIL() << "a 16384 segment was accepted";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("segments n / m up to 8192"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuda_hadamard_rows(stream.get(), nullptr, 1, 24, nullptr, 5, nullptr, false), InternalError);
  EXPECT_THROW(cuda_hadamard_rows(stream.get(), nullptr, 1, 12, nullptr, 4, nullptr, false), InternalError)
      << "12 / 4 = 3 is not a power of two";
  cuda_hadamard_rows(stream.get(), nullptr, 0, 64, nullptr, 1, nullptr, false);  // no rows: no launch
}

}  // namespace
}  // namespace streamq
