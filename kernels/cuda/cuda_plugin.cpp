// libstreamq_cuda.so's entry table (see cuda_plugin.h): the CUDA backend and
// device queries behind function pointers, the backend owning its pool.
#include "kernels/cuda/cuda_plugin.h"

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/device_pool.h"
#include "kernels/forwarding_backend.h"

namespace streamq {
namespace {

// The CUDA backend and the pool it draws from, released together (backend
// first: its workspaces are pool buffers).
class PoolOwningCudaBackend final : public ForwardingBackend {
 public:
  PoolOwningCudaBackend(std::unique_ptr<DevicePool> pool, std::unique_ptr<CudaBackend> backend)
      : ForwardingBackend(*backend), pool_(std::move(pool)), backend_(std::move(backend)) {}

 private:
  std::unique_ptr<DevicePool> pool_;
  std::unique_ptr<CudaBackend> backend_;  // declared after pool_: destroyed first
};

std::unique_ptr<Backend> open_cuda(uint64_t pool_bytes) {
  auto pool = std::make_unique<DevicePool>(pool_bytes);
  auto backend = make_cuda_backend(*pool);
  return std::make_unique<PoolOwningCudaBackend>(std::move(pool), std::move(backend));
}

uint64_t default_pool_limit() { return DevicePool::default_limit(); }

constexpr CudaPlugin kPlugin{
    .abi = kCudaPluginAbi,
    .device_count = &cuda_device_count,
    .unavailable_reason = &cuda_unavailable_reason,
    .device_description = &cuda_device_description,
    .default_pool_limit = &default_pool_limit,
    .open = &open_cuda,
};

}  // namespace
}  // namespace streamq

extern "C" __attribute__((visibility("default"))) const streamq::CudaPlugin* streamq_cuda_plugin() {
  return &streamq::kPlugin;
}
