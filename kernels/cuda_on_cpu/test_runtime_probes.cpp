// Probes of the CPU runtime itself (HIP-CPU plus hip-cpu.patch plus the shim),
// run in streamq_gpu_emu_tests before anything trusts it with the real
// kernels: CUDA's warp of 32, warp-local shuffles and ballots (a warp-uniform
// branch that skips them, as attention.cu's rows past seqlen do, must not
// pair them with __syncthreads), shared memory poisoned per block, CUDA's
// shuffle lane rules and launch-configuration errors. Each kernel below is
// legal CUDA with the result a GPU gives, except what thread 0 reads from
// unwritten shared memory: that is this runtime's poison, a GPU's garbage.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_raii.h"
#include "kernels/cuda/launch.cuh"

namespace streamq {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
std::vector<T> to_host(const DeviceBuffer<T>& d, cudaStream_t s) {
  std::vector<T> h(d.size());
  CUDA_CHECK(cudaMemcpyAsync(h.data(), d.get(), d.bytes(), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  return h;
}

__device__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// ballots[block * blockDim + t] = the ballot of "true" in t's warp.
__global__ void ballot_kernel(unsigned* ballots) {
  ballots[blockIdx.x * blockDim.x + threadIdx.x] = __ballot_sync(kFullMask, 1);
}

TEST(CudaOnCpuRuntime, WarpSizeIs32AndBallotIsMaskedToTheWarp) {
  EXPECT_EQ(warpSize, 32);
  CudaStream stream;
  const unsigned blocks = 64;
  // A full second warp first: its 32 predicate bits stay in the runtime's
  // per-thread scratch, and the 16-lane warp below must not report them.
  DeviceBuffer<unsigned> full(blocks * 64), partial(blocks * 48);
  STREAMQ_LAUNCH(ballot_kernel, blocks, 64, 0, stream.get())(full.get());
  CUDA_CHECK_LAUNCH("ballot_kernel, 64 threads");
  STREAMQ_LAUNCH(ballot_kernel, blocks, 48, 0, stream.get())(partial.get());
  CUDA_CHECK_LAUNCH("ballot_kernel, 48 threads");
  const std::vector<unsigned> f = to_host(full, stream.get()), p = to_host(partial, stream.get());
  for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(f[i], kFullMask) << i;
  for (size_t i = 0; i < p.size(); ++i)
    ASSERT_EQ(p[i], i % 48 < 32 ? kFullMask : 0xffffu) << "block " << i / 48 << " thread " << i % 48;
}

constexpr int kProbeWarps = 4;
constexpr int kProbeRounds = 8;

// Per round: a block-wide exchange through shared memory between two
// __syncthreads, then a warp sum that warp-uniformly skips some warps, as
// attention_kernel skips rows past the sequence end. out[round][thread] =
// the warp's sum of (shared value of the lane's mirror thread) when the warp
// takes part, else -1. The skipping warps alternate, and warp 0 skips too.
__global__ void divergent_shuffle_kernel(float* out) {
  STREAMQ_SHARED(float[kProbeWarps * 32], exchange);
  const int tid = threadIdx.x, warp = tid / 32, n = blockDim.x;
  for (int round = 0; round < kProbeRounds; ++round) {
    __syncthreads();  // last round's readers are done
    exchange[tid] = static_cast<float>(round * 1000 + tid);
    __syncthreads();
    float* o = out + (blockIdx.x * kProbeRounds + round) * n + tid;
    if ((warp + round) % 2 == 1 || (round == 3 && warp == 0)) {  // warp-uniform
      *o = -1.0f;
      continue;
    }
    *o = warp_sum(exchange[n - 1 - tid]);
  }
}

TEST(CudaOnCpuRuntime, WarpUniformBranchSkippingShufflesDoesNotPairWithSyncthreads) {
  CudaStream stream;
  const unsigned blocks = 16, threads = kProbeWarps * 32;
  DeviceBuffer<float> out(blocks * kProbeRounds * threads);
  STREAMQ_LAUNCH(divergent_shuffle_kernel, blocks, threads, 0, stream.get())(out.get());
  CUDA_CHECK_LAUNCH("divergent_shuffle_kernel");
  const std::vector<float> got = to_host(out, stream.get());
  for (unsigned b = 0; b < blocks; ++b)
    for (int round = 0; round < kProbeRounds; ++round)
      for (unsigned t = 0; t < threads; ++t) {
        const int warp = static_cast<int>(t / 32);
        float want = -1.0f;
        if (!((warp + round) % 2 == 1 || (round == 3 && warp == 0))) {
          want = 0.0f;  // exact: small integers
          for (unsigned lane = 0; lane < 32; ++lane)
            want += static_cast<float>(round * 1000 + (threads - 1 - (warp * 32 + lane)));
        }
        ASSERT_EQ(got[(b * kProbeRounds + round) * threads + t], want)
            << "block " << b << " round " << round << " thread " << t;
      }
}

// first[block] = the bits thread 0 finds in static and dynamic shared memory
// before anything in its block wrote there; then every thread writes.
__global__ void shared_poison_kernel(uint32_t* first_static, uint32_t* first_dynamic) {
  STREAMQ_SHARED(float[64], tile);
  STREAMQ_DYNAMIC_SHARED(float, dyn);
  if (threadIdx.x == 0) {
    std::memcpy(&first_static[blockIdx.x], &tile[5], 4);
    std::memcpy(&first_dynamic[blockIdx.x], &dyn[7], 4);
  }
  __syncthreads();
  tile[threadIdx.x] = 1.0f;
  dyn[threadIdx.x] = 2.0f;
  __syncthreads();
}

TEST(CudaOnCpuRuntime, SharedMemoryIsPoisonedAtEveryBlockStart) {
  CudaStream stream;
  const unsigned blocks = 512;  // many per OS thread: later blocks would see earlier ones' writes
  DeviceBuffer<uint32_t> first_static(blocks), first_dynamic(blocks);
  STREAMQ_LAUNCH(shared_poison_kernel, blocks, 64, 64 * sizeof(float), stream.get())(
      first_static.get(), first_dynamic.get());
  CUDA_CHECK_LAUNCH("shared_poison_kernel");
  const std::vector<uint32_t> s = to_host(first_static, stream.get());
  const std::vector<uint32_t> d = to_host(first_dynamic, stream.get());
  for (unsigned b = 0; b < blocks; ++b) {
    ASSERT_EQ(s[b], 0xffffffffu) << "static shared memory of block " << b;
    ASSERT_EQ(d[b], 0xffffffffu) << "dynamic shared memory of block " << b;
  }
}

// out[4 * t + i]: shfl from lane + 33 (CUDA reads lane (lane + 1) mod 32),
// down by 3, up by 3, xor 5, of the value 100 + lane.
__global__ void shuffle_rules_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x % 32), v = 100 + lane;
  int* o = out + 4 * threadIdx.x;
  o[0] = __shfl_sync(kFullMask, v, lane + 33);
  o[1] = __shfl_down_sync(kFullMask, v, 3);
  o[2] = __shfl_up_sync(kFullMask, v, 3);
  o[3] = __shfl_xor_sync(kFullMask, v, 5);
}

TEST(CudaOnCpuRuntime, ShufflesFollowCudaLaneRules) {
  CudaStream stream;
  DeviceBuffer<int> out(4 * 64);
  STREAMQ_LAUNCH(shuffle_rules_kernel, 1, 64, 0, stream.get())(out.get());
  CUDA_CHECK_LAUNCH("shuffle_rules_kernel");
  const std::vector<int> got = to_host(out, stream.get());
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    EXPECT_EQ(got[4 * t + 0], 100 + (lane + 1) % 32) << t;
    EXPECT_EQ(got[4 * t + 1], 100 + (lane + 3 < 32 ? lane + 3 : lane)) << t;  // out of range: own value
    EXPECT_EQ(got[4 * t + 2], 100 + (lane >= 3 ? lane - 3 : lane)) << t;
    EXPECT_EQ(got[4 * t + 3], 100 + (lane ^ 5)) << t;
  }
}

__global__ void noop_kernel(int* p) {
  if (p != nullptr) *p = 1;
}

TEST(CudaOnCpuRuntime, BadLaunchConfigurationsFailAsOnAGpu) {
  CudaStream stream;
  STREAMQ_LAUNCH(noop_kernel, 1, 2048, 0, stream.get())(nullptr);  // > 1024 threads
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  STREAMQ_LAUNCH(noop_kernel, 0, 32, 0, stream.get())(nullptr);  // empty grid
  EXPECT_THROW(CUDA_CHECK_LAUNCH("noop_kernel with an empty grid"), InternalError);
  STREAMQ_LAUNCH(noop_kernel, 1, 32, 64 * 1024, stream.get())(nullptr);  // > 48 KiB dynamic
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read once, then cleared
  stream.synchronize();
}

}  // namespace
}  // namespace streamq
