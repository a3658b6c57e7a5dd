// The out-of-line half of the CUDA runtime stand-in (see runtime.h): error
// names, the emulated device's memory and properties, launch checks, and the
// per-thread dynamic shared memory.
#include "kernels/cuda_on_cpu/runtime.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace streamq::cuda_on_cpu {
namespace {

// CUDA's limits for every current GPU: a launch outside them fails there, so
// it fails here too rather than passing only on the CPU.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxGridY = 65535, kMaxGridZ = 65535;
constexpr size_t kMaxSharedPerBlock = 48 * 1024;  // without a cudaFuncSetAttribute opt-in
constexpr size_t kMallocAlignment = 256;          // cudaMalloc's guarantee

// /proc/meminfo's value for `key` in bytes, or -1.
long long meminfo_bytes(const char* key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream fields(line.substr(prefix.size()));
    long long kib = -1;
    fields >> kib;
    return kib < 0 ? -1 : kib * 1024;
  }
  return -1;
}

size_t total_host_memory() {
  const long long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
}

}  // namespace

cudaError_t& last_error() {
  thread_local cudaError_t e = cudaSuccess;
  return e;
}

cudaError_t from_hip(hipError_t e) {
  switch (e) {
    case hipSuccess: return cudaSuccess;
    case hipErrorInvalidValue: return cudaErrorInvalidValue;
    case hipErrorOutOfMemory: return cudaErrorMemoryAllocation;
    case hipErrorNotInitialized: return cudaErrorInitializationError;
    case hipErrorInvalidDevice: return cudaErrorInvalidDevice;
    case hipErrorInvalidResourceHandle: return cudaErrorInvalidResourceHandle;
    case hipErrorNotSupported: return cudaErrorNotSupported;
    default: return cudaErrorUnknown;
  }
}

// HIP-CPU's hipMalloc reports success when malloc fails and aligns to 16
// bytes only: allocated here instead (hipFree's std::free releases both).
cudaError_t malloc_device(void** ptr, size_t bytes) {
  if (ptr == nullptr) return cudaErrorInvalidValue;
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  // A request past the whole "device" (host RAM) fails as on a full GPU,
  // even where overcommit would hand out the address space.
  if (bytes > total_host_memory()) return cudaErrorMemoryAllocation;
  const size_t rounded = (bytes + kMallocAlignment - 1) / kMallocAlignment * kMallocAlignment;
  *ptr = std::aligned_alloc(kMallocAlignment, rounded);
  return *ptr != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}

// MemAvailable, not MemFree: page cache is reclaimable, as free device
// memory is (DevicePool::default_limit subtracts a margin from this).
cudaError_t memory_info(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return cudaErrorInvalidValue;
  const long long available = meminfo_bytes("MemAvailable");
  *total_bytes = total_host_memory();
  *free_bytes = available >= 0 ? static_cast<size_t>(available)
                               : static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) *
                                     static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return cudaSuccess;
}

cudaError_t device_properties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return cudaErrorInvalidValue;
  if (device != 0) return cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name,
                "HIP-CPU on the host CPU (kernel logic only, warpSize %d)", warpSize);
  prop->totalGlobalMem = total_host_memory();
  prop->sharedMemPerBlock = kMaxSharedPerBlock;
  prop->warpSize = warpSize;
  prop->maxThreadsPerBlock = kMaxThreadsPerBlock;
  prop->major = 0;  // no compute capability: the GPU is emulated
  prop->minor = 0;
  prop->multiProcessorCount = static_cast<int>(std::thread::hardware_concurrency());
  return cudaSuccess;
}

cudaError_t check_launch(const dim3& grid, const dim3& block, size_t dynamic_shared_bytes) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > kMaxGridY || grid.z > kMaxGridZ ||
      grid.x > 0x7fffffffu)
    return cudaErrorInvalidConfiguration;
  if (block.x == 0 || block.y != 1 || block.z != 1 || block.x > kMaxThreadsPerBlock)
    return cudaErrorInvalidConfiguration;
  if (dynamic_shared_bytes > kMaxSharedPerBlock) return cudaErrorInvalidValue;
  return cudaSuccess;
}

std::byte* dynamic_shared_storage(bool block_start) {
  thread_local std::vector<std::max_align_t> storage;
  if (block_start) {
    const size_t bytes =
        scratchpad_size(domain(hip::detail::Tile::this_tile()));
    storage.resize((bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
    std::memset(storage.data(), kSharedPoisonByte, storage.size() * sizeof(std::max_align_t));
  }
  return reinterpret_cast<std::byte*>(storage.data());
}

void unsupported(const char* what) {
  std::fprintf(stderr, "streamq CUDA-on-CPU runtime: %s is not supported\n", what);
  std::abort();
}

}  // namespace streamq::cuda_on_cpu

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
  }
}
