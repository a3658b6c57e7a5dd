// GPU elementwise ops (see elementwise.cuh).
#include "kernels/cuda/elementwise.cuh"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

// No __restrict__: out may alias gate or up (each element is read before it is
// written, by the same thread).
__global__ void swiglu_kernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = gate[i];
    // expf, not __expf: the fast intrinsic is off by many ulp for large |g|.
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

}  // namespace

void cuda_swiglu(cudaStream_t stream, const float* gate, const float* up, float* out,
                 int64_t n) {
  cuda_detail::check_count("cuda_swiglu", n);
  if (n == 0) return;
  swiglu_kernel<<<cuda_detail::elementwise_blocks(n), cuda_detail::kElementwiseBlock, 0,
                  stream>>>(gate, up, out, n);
  CUDA_CHECK_LAUNCH("swiglu_kernel, n=" + std::to_string(n));
}

}  // namespace streamq
