// Every backend this test binary was built with, made once per process: the
// CPU backend and the emulated device (its own address space, checked
// pointers, CPU arithmetic: it must pass every row bit for bit like the CPU)
// always; the CUDA backend (on a pool holding the device's free
// memory) where the binary links it (STREAMQ_HAVE_CUDA: the nvcc GPU tests
// and the CUDA-on-CPU ones).
#pragma once

#include <memory>
#include <vector>

#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#if defined(STREAMQ_HAVE_CUDA)
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_pool.h"
#endif

namespace streamq::test {

inline std::vector<Backend*> backends_under_test() {
  struct Owned {
#if defined(STREAMQ_HAVE_CUDA)
    std::unique_ptr<DevicePool> pool;  // declared first: outlives the backend
#endif
    std::vector<std::unique_ptr<Backend>> all;
    Owned() {
      all.push_back(make_cpu_backend());
      // Capacity: the largest row (a 4096-token attention, GEMMs of ~2M
      // elements) needs well under 1 GiB at once.
      all.push_back(make_emulated_backend({.memory_bytes = uint64_t{4} << 30}));
#if defined(STREAMQ_HAVE_CUDA)
      pool = std::make_unique<DevicePool>(DevicePool::default_limit());
      all.push_back(make_cuda_backend(*pool));
#endif
    }
  };
  static Owned owned;
  std::vector<Backend*> out;
  for (auto& be : owned.all) out.push_back(be.get());
  return out;
}

}  // namespace streamq::test
