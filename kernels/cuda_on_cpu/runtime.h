// The CUDA runtime API and device intrinsics that kernels/cuda and tests/gpu
// use, mapped onto HIP-CPU (vendored in hip-cpu/, patched by hip-cpu.patch),
// so the unchanged kernel sources compile with the host compiler and run on
// CPU threads and fibers. It checks kernel logic, not performance. Reached
// through the shadow headers (shadow/cuda_runtime_api.h, ...), never directly.
//
// What differs from a GPU, on purpose or by necessity:
// - one "device" whose memory is host memory; cudaMalloc is aligned_alloc(256),
//   and a request larger than host RAM fails like a full device;
// - shuffles take width 32 only and ignore the mask (all our warps are full);
// - blocks are one-dimensional (HIP-CPU orders multi-dimensional thread
//   indices with x slowest, unlike CUDA): a launch with blockDim.y or .z > 1
//   fails with cudaErrorInvalidConfiguration;
// - shared memory is per OS thread in HIP-CPU and would carry one block's
//   values into the next: here it is poisoned (all bytes 0xFF) when a block
//   starts, so reading it before writing it shows as NaN.
#pragma once

#include <hip/hip_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>

// HIP-CPU gives __device__ and __global__ GCC's `simd` attribute (vector
// clones of every kernel, never called here) and `flatten`: without them
// attention.cu compiles in 7.7 s instead of 11.2 s at -O3 (6.0 s vs 7.6 s at
// -O1).
#undef __device__
#define __device__
#undef __global__
#define __global__
// Static shared memory must go through STREAMQ_SHARED (kernels/cuda/launch.cuh),
// which poisons it per block; HIP-CPU's bare `thread_local` would not.
#undef __shared__
#define __shared__ static_assert(false, "declare shared memory with STREAMQ_SHARED (kernels/cuda/launch.cuh)");

// ---- error codes (CUDA's values)

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999,
};
using cudaError_t = cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_16BF = 14,
};
using cudaDataType = cudaDataType_t;

using cudaStream_t = hipStream_t;
using cudaEvent_t = hipEvent_t;
constexpr unsigned cudaStreamDefault = 0;
constexpr unsigned cudaStreamNonBlocking = 1;

// The fields streamq reads (kernels/cuda/cuda_device.cu), CUDA's names.
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int major;
  int minor;
  int multiProcessorCount;
};

namespace streamq::cuda_on_cpu {

// The calling host thread's last error, as cudaGetLastError reports it.
cudaError_t& last_error();
// Records a failure for cudaGetLastError and returns e.
inline cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) last_error() = e;
  return e;
}
cudaError_t from_hip(hipError_t e);
cudaError_t malloc_device(void** ptr, size_t bytes);
cudaError_t memory_info(size_t* free_bytes, size_t* total_bytes);
cudaError_t device_properties(cudaDeviceProp* prop, int device);
// cudaSuccess, or why a launch of this shape would fail on a GPU.
cudaError_t check_launch(const dim3& grid, const dim3& block, size_t dynamic_shared_bytes);

// ---- shared memory, per block

// The emulated thread (0, 0, 0) runs first in every block: it poisons.
inline bool is_block_leader() { return id(hip::detail::Fiber::this_fiber()) == 0; }

constexpr unsigned char kSharedPoisonByte = 0xFF;  // NaN as float and as double

inline void poison_shared_at_block_start(void* p, size_t bytes) {
  if (is_block_leader()) std::memset(p, kSharedPoisonByte, bytes);
}

// This OS thread's dynamic shared memory (the launch's byte count), poisoned
// by the block's first thread before the kernel body runs.
std::byte* dynamic_shared_storage(bool block_start);

template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(dynamic_shared_storage(false));
}

// ---- launches: STREAMQ_LAUNCH(kernel, grid, block, shmem, stream)(args...)

template <typename Body>
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t stream, Body body)
      : grid_(grid), block_(block), shmem_(shmem), stream_(stream), body_(std::move(body)) {}

  // Arguments are copied, as a real launch copies them into parameter space.
  template <typename... Args>
  void operator()(const Args&... args) const {
    if (record(check_launch(grid_, block_, shmem_)) != cudaSuccess) return;
    const bool has_dynamic = shmem_ > 0;
    hip::detail::launch(
        grid_, block_, static_cast<std::uint32_t>(shmem_), stream_,
        [body = body_, has_dynamic](const auto&... xs) {
          if (has_dynamic && is_block_leader()) dynamic_shared_storage(true);
          body(xs...);
        },
        std::make_tuple(args...));
  }

 private:
  dim3 grid_, block_;
  size_t shmem_;
  cudaStream_t stream_;
  Body body_;
};

template <typename Body>
Launch<Body> make_launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t stream, Body body) {
  return Launch<Body>(grid, block, shmem, stream, std::move(body));
}

[[noreturn]] void unsupported(const char* what);

}  // namespace streamq::cuda_on_cpu

// ---- runtime API

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = streamq::cuda_on_cpu::last_error();
  streamq::cuda_on_cpu::last_error() = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return streamq::cuda_on_cpu::last_error(); }
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);

inline cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::malloc_device(ptr, bytes));
}
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
// hipFree waits for the device first, as cudaFree does.
inline cudaError_t cudaFree(void* ptr) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipFree(ptr)));
}

// Pinned host memory: HIP-CPU's hipHostMalloc (plain malloc; every host
// byte is as "pinned" as any other here). Its failure check looks at the
// wrong pointer, so a null block is reported here as CUDA would.
constexpr unsigned cudaHostAllocDefault = 0;
inline cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags) {
  if (ptr == nullptr) return streamq::cuda_on_cpu::record(cudaErrorInvalidValue);
  const hipError_t rc = hipHostMalloc(ptr, bytes, static_cast<hipHostMallocKind>(flags));
  if (rc == hipSuccess && *ptr == nullptr && bytes > 0) return streamq::cuda_on_cpu::record(cudaErrorMemoryAllocation);
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(rc));
}
template <typename T>
cudaError_t cudaHostAlloc(T** ptr, size_t bytes, unsigned flags) {
  return cudaHostAlloc(reinterpret_cast<void**>(ptr), bytes, flags);
}
// hipHostFree waits for the device first, as cudaFreeHost does.
inline cudaError_t cudaFreeHost(void* ptr) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipHostFree(ptr)));
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(
      hipMemcpy(dst, src, bytes, static_cast<hipMemcpyKind>(kind))));
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(
      hipMemcpyAsync(dst, src, bytes, static_cast<hipMemcpyKind>(kind), stream)));
}
inline cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  return streamq::cuda_on_cpu::record(
      streamq::cuda_on_cpu::from_hip(hipMemset(dst, value, bytes)));
}
inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes,
                                   cudaStream_t stream = nullptr) {
  return streamq::cuda_on_cpu::record(
      streamq::cuda_on_cpu::from_hip(hipMemsetAsync(dst, value, bytes, stream)));
}

inline cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipStreamCreate(stream)));
}
// HIP-CPU streams never wait for one another: every stream is non-blocking.
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned /*flags*/) {
  return cudaStreamCreate(stream);
}
inline cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipStreamDestroy(stream)));
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return streamq::cuda_on_cpu::record(
      streamq::cuda_on_cpu::from_hip(hipStreamSynchronize(stream)));
}
// Events time host steady-clock instants at which the stream reached them
// (HIP-CPU runs a stream's work in order on its own thread).
inline cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipEventCreate(event)));
}
inline cudaError_t cudaEventDestroy(cudaEvent_t event) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipEventDestroy(event)));
}
inline cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipEventRecord(event, stream)));
}
// Flags change nothing on the CPU runtime (timing costs nothing there).
constexpr unsigned cudaEventDisableTiming = 2;
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned /*flags*/) {
  return cudaEventCreate(event);
}
// HIP-CPU runs every stream's work on one processor thread, so a wait
// queued on one stream for another stream's event can block that thread
// before it has run the event's stream: a deadlock (seen). The wait is made
// on the calling host thread instead: the event has passed when this
// returns, so the stream's later work comes after it. The same order as
// CUDA's, only stronger (the host waits too).
inline cudaError_t cudaStreamWaitEvent(cudaStream_t /*stream*/, cudaEvent_t event, unsigned /*flags*/) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipEventSynchronize(event)));
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipEventSynchronize(event)));
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipEventElapsedTime(ms, start, end)));
}
inline cudaError_t cudaDeviceSynchronize() {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::from_hip(hipDeviceSynchronize()));
}

inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::memory_info(free_bytes, total_bytes));
}
inline cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return streamq::cuda_on_cpu::record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return streamq::cuda_on_cpu::record(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : streamq::cuda_on_cpu::record(cudaErrorInvalidDevice);
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  return streamq::cuda_on_cpu::record(streamq::cuda_on_cpu::device_properties(prop, device));
}
// No driver and no CUDA runtime: version 0 says so.
inline cudaError_t cudaDriverGetVersion(int* version) {
  if (version == nullptr) return streamq::cuda_on_cpu::record(cudaErrorInvalidValue);
  *version = 0;
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* version) { return cudaDriverGetVersion(version); }

// ---- device intrinsics. Warp operations take CUDA's width of 32 only; the
// mask is not checked (every warp streamq launches is converged and full).

template <typename T>
T __shfl_sync(unsigned /*mask*/, T v, int src_lane, int width = 32) {
  if (width != warpSize) streamq::cuda_on_cpu::unsupported("__shfl_sync with width != 32");
  return hip::detail::shuffle(v, src_lane & (warpSize - 1), warpSize);  // CUDA: src mod width
}
template <typename T>
T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask, int width = 32) {
  if (width != warpSize || lane_mask < 0 || lane_mask >= warpSize)
    streamq::cuda_on_cpu::unsupported("__shfl_xor_sync with width != 32 or lane mask outside [0, 32)");
  return hip::detail::shuffle_xor(v, lane_mask, warpSize);
}
template <typename T>
T __shfl_down_sync(unsigned /*mask*/, T v, unsigned delta, int width = 32) {
  if (width != warpSize) streamq::cuda_on_cpu::unsupported("__shfl_down_sync with width != 32");
  return hip::detail::shuffle_down(v, static_cast<std::int32_t>(delta), warpSize);
}
template <typename T>
T __shfl_up_sync(unsigned /*mask*/, T v, unsigned delta, int width = 32) {
  if (width != warpSize) streamq::cuda_on_cpu::unsupported("__shfl_up_sync with width != 32");
  return hip::detail::shuffle_up(v, static_cast<std::int32_t>(delta), warpSize);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return static_cast<unsigned>(hip::detail::ballot(predicate)) & mask;
}
inline void __syncwarp(unsigned /*mask*/ = 0xffffffffu) {
  hip::detail::Tile::this_tile().warp_barrier();
}

// Explicitly rounded arithmetic: separate IEEE operations (the build uses
// -ffp-contract=off, so nothing is fused into an FMA).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }

inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline int __float_as_int(float f) { return static_cast<int>(__float_as_uint(f)); }
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }
// CUDA's math library classifies in the global namespace.
using std::isfinite;
using std::isinf;
using std::isnan;

inline long long __double_as_longlong(double d) {
  long long i;
  std::memcpy(&i, &d, sizeof i);
  return i;
}
