// CUDA device discovery that reports instead of throwing (see cuda_device.h).
#include "kernels/cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

namespace streamq {
namespace {

struct DeviceQuery {
  int count = 0;
  std::string reason;  // empty when count > 0
};

DeviceQuery query_devices() {
  DeviceQuery q;
  const cudaError_t err = cudaGetDeviceCount(&q.count);
  if (err != cudaSuccess) {
    // Clear the runtime's last-error slot so later, unrelated checks do not
    // report this expected failure.
    cudaGetLastError();
    q.count = 0;
    q.reason = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  } else if (q.count <= 0) {
    q.count = 0;
    q.reason = "no CUDA device found";
  }
  return q;
}

}  // namespace

int cuda_device_count() { return query_devices().count; }

std::string cuda_unavailable_reason() { return query_devices().reason; }

std::string cuda_device_description() {
  const DeviceQuery q = query_devices();
  if (q.count == 0) return q.reason;
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::string out;
  for (int d = 0; d < q.count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
      cudaGetLastError();
      out += std::to_string(d) + ": (properties unavailable)\n";
      continue;
    }
    char line[512];
    std::snprintf(line, sizeof line, "%d: %s (sm_%d%d, %.1f GiB, %d SMs)\n", d, prop.name,
                  prop.major, prop.minor,
                  static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                  prop.multiProcessorCount);
    out += line;
  }
  out += "driver " + std::to_string(driver) + ", runtime " + std::to_string(runtime);
  return out;
}

}  // namespace streamq
