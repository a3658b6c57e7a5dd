// Kernel launches and shared-memory declarations, spelled once for both
// builds of kernels/cuda: nvcc's syntax, or the CPU runtime's when the same
// sources are compiled by the host compiler against HIP-CPU
// (STREAMQ_CUDA_ON_CPU, kernels/cuda_on_cpu/), where a launch is a call and
// shared memory is poisoned (all bytes 0xFF) at the start of every block.
//
//   STREAMQ_LAUNCH(kernel, grid, block, shmem, stream)(args...);
//   STREAMQ_SHARED(float[16][129], tile);    // __shared__ float tile[16][129];
//   STREAMQ_DYNAMIC_SHARED(float, smem);     // extern __shared__ float smem[];
#pragma once

#include <cuda_runtime.h>

namespace streamq::cuda_detail {
// Lets an array type be one macro argument: SharedType<float[4]> x is float x[4].
template <typename T>
using SharedType = T;
}  // namespace streamq::cuda_detail

#if defined(STREAMQ_CUDA_ON_CPU)

#define STREAMQ_LAUNCH(kernel, grid, block, shmem, stream)                           \
  ::streamq::cuda_on_cpu::make_launch((grid), (block), (shmem), (stream),            \
                                      [](const auto&... streamq_launch_args_) {      \
                                        kernel(streamq_launch_args_...);             \
                                      })
#define STREAMQ_SHARED(T, name)                                        \
  thread_local ::streamq::cuda_detail::SharedType<T> name;             \
  ::streamq::cuda_on_cpu::poison_shared_at_block_start(&name, sizeof name)
#define STREAMQ_DYNAMIC_SHARED(T, name) T* const name = ::streamq::cuda_on_cpu::dynamic_shared<T>()

#else

#define STREAMQ_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#define STREAMQ_SHARED(T, name) __shared__ ::streamq::cuda_detail::SharedType<T> name
#define STREAMQ_DYNAMIC_SHARED(T, name) extern __shared__ T name[]

#endif
