// The CUDA backend as a plugin: libstreamq_cuda.so, built next to the
// streamq binary when nvcc is found, and opened (dlopen) only when --device
// asks for CUDA. Linking cudart, cuBLAS and cuSOLVER into the binary costs
// every run ~240 MiB of resident memory before main() (the libraries'
// relocations), which a CPU job would count against --host-mem-limit; behind
// a plugin a CPU job pays nothing.
//
// The table is C++ (std::string, std::unique_ptr): the plugin and the binary
// are built by one build with one compiler and standard library, and
// kCudaPluginAbi catches a stale plugin left next to a newer binary. The
// plugin's copies of streamq's static libraries are hidden (it exports this
// one symbol), so its Backend and the binary's never mix symbols; exceptions
// cross (libstdc++ matches type_info by name).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/backend.h"

namespace streamq {

// Bump whenever CudaPlugin or a type crossing it changes layout.
inline constexpr int kCudaPluginAbi = 1;

struct CudaPlugin {
  int abi;
  // Never throw: 0 / the CUDA error text / one line per device.
  int (*device_count)();
  std::string (*unavailable_reason)();
  std::string (*device_description)();
  // The current device's free memory minus DevicePool's margin; throws
  // InternalError when no device answers.
  uint64_t (*default_pool_limit)();
  // A CUDA backend drawing from a pool of pool_bytes that it owns (released
  // with the backend). Throws BudgetError when the pool cannot hold the
  // libraries' workspaces.
  std::unique_ptr<Backend> (*open)(uint64_t pool_bytes);
};

}  // namespace streamq

// The one symbol libstreamq_cuda.so exports.
extern "C" const streamq::CudaPlugin* streamq_cuda_plugin();
inline constexpr const char* kCudaPluginSymbol = "streamq_cuda_plugin";
inline constexpr const char* kCudaPluginFile = "libstreamq_cuda.so";
