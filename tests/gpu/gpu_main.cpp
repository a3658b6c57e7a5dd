// Entry point of the GPU test binary: runs the gtest suite when a CUDA device
// answers, otherwise prints why and exits 77, which ctest reports as skipped.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "kernels/cuda/cuda_device.h"

namespace {
// ctest's SKIP_RETURN_CODE for gpu_tests (CMakeLists.txt) and automake's convention.
constexpr int kSkipExitCode = 77;
}  // namespace

int main(int argc, char** argv) {
  if (streamq::cuda_device_count() == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", streamq::cuda_unavailable_reason().c_str());
    return kSkipExitCode;
  }
  std::printf("CUDA devices:\n%s\n", streamq::cuda_device_description().c_str());
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
