// Helpers shared by the GPU tests: the replayable seed, host<->device copies,
// and device buffers poisoned with guard regions on both sides, so a kernel
// that writes out of bounds or leaves an output unwritten fails its test.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_raii.h"

namespace streamq::gpu_test {

// Elements on each side of a guarded buffer that the kernels must leave alone.
constexpr size_t kGuard = 64;
// All-ones bytes: NaN as float and as double, so an unwritten output element
// turns any relative error into NaN, which fails every EXPECT_LE.
constexpr unsigned char kPoisonByte = 0xFF;

// tests/support/test_util.cpp's fresh_seed(), which is not linked into this binary:
// fresh each run unless STREAMQ_TEST_SEED replays one.
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("STREAMQ_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

// Declares `rng` seeded from fresh_seed() and traces the seed, so a failure
// prints the STREAMQ_TEST_SEED that replays it.
#define STREAMQ_GPU_SEEDED_RNG(rng)                                                    \
  const uint64_t rng##_seed = ::streamq::gpu_test::fresh_seed();                       \
  SCOPED_TRACE("replay with STREAMQ_TEST_SEED=" + std::to_string(rng##_seed));         \
  std::mt19937_64 rng(rng##_seed)

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& d, cudaStream_t stream) {
  std::vector<T> h(d.size());
  CUDA_CHECK(cudaMemcpyAsync(h.data(), d.get(), d.bytes(), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return h;
}

template <typename T>
DeviceBuffer<T> upload(const std::vector<T>& h, cudaStream_t stream) {
  DeviceBuffer<T> d(h.size());
  CUDA_CHECK(cudaMemcpyAsync(d.get(), h.data(), d.bytes(), cudaMemcpyHostToDevice, stream));
  return d;
}

template <typename T>
DeviceBuffer<T> poisoned_device(size_t n, cudaStream_t stream) {
  DeviceBuffer<T> d(n);
  CUDA_CHECK(cudaMemsetAsync(d.get(), kPoisonByte, d.bytes(), stream));
  return d;
}

// True when every element of h from index n on still holds the poison bytes.
template <typename T>
bool guard_intact(const std::vector<T>& h, size_t n) {
  for (size_t i = n; i < h.size(); ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(&h[i]);
    for (size_t b = 0; b < sizeof(T); ++b)
      if (p[b] != kPoisonByte) return false;
  }
  return true;
}

// n elements on the device between two poisoned guards of kGuard elements.
// The elements themselves start poisoned too (an output) or hold a host
// vector (an input, or an in-place output).
template <typename T>
class GuardedBuffer {
 public:
  GuardedBuffer(size_t n, cudaStream_t stream) : n_(n), buf_(n + 2 * kGuard) {
    CUDA_CHECK(cudaMemsetAsync(buf_.get(), kPoisonByte, buf_.bytes(), stream));
  }
  GuardedBuffer(const std::vector<T>& h, cudaStream_t stream) : GuardedBuffer(h.size(), stream) {
    if (!h.empty()) {
      CUDA_CHECK(cudaMemcpyAsync(get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice,
                                 stream));
    }
  }

  T* get() const { return buf_.get() + kGuard; }
  size_t size() const { return n_; }

  // The n elements; a test failure (naming `what`) when a guard was touched.
  std::vector<T> download(cudaStream_t stream, const std::string& what) const {
    std::vector<T> all(buf_.size());
    CUDA_CHECK(cudaMemcpyAsync(all.data(), buf_.get(), buf_.bytes(), cudaMemcpyDeviceToHost,
                               stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<T> front(all.begin(), all.begin() + kGuard);
    EXPECT_TRUE(guard_intact(front, 0)) << what << ": wrote before the start of the buffer";
    EXPECT_TRUE(guard_intact(all, kGuard + n_)) << what << ": wrote past the end of the buffer";
    return std::vector<T>(all.begin() + kGuard, all.begin() + kGuard + n_);
  }

 private:
  size_t n_;
  DeviceBuffer<T> buf_;
};

}  // namespace streamq::gpu_test
