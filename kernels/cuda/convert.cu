// GPU element-type conversions (see convert.cuh); the bit manipulation is the
// CPU's f32_to_bf16 verbatim so both round identically, and bf16 -> float is
// the same 16-bit shift as cpu::bf16_to_f32.
#include "kernels/cuda/convert.cuh"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

__device__ __forceinline__ uint16_t f32_to_bf16_rne(float f) {
  const uint32_t u = __float_as_uint(f);
  // NaN: truncate and set the quiet bit, so a signalling NaN cannot round to inf.
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ in, uint16_t* __restrict__ out,
                                   int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = f32_to_bf16_rne(in[i]);
  }
}

__global__ void bf16_to_f32_kernel(const uint16_t* __restrict__ in, float* __restrict__ out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = __uint_as_float(static_cast<uint32_t>(in[i]) << 16);
}

}  // namespace

void cuda_bf16_to_f32(cudaStream_t stream, const uint16_t* in, float* out, int64_t n) {
  cuda_detail::check_count("cuda_bf16_to_f32", n);
  if (n == 0) return;  // a zero-block launch is an error
  STREAMQ_LAUNCH(bf16_to_f32_kernel, cuda_detail::elementwise_blocks(n), cuda_detail::kElementwiseBlock, 0,
                 stream)(in, out, n);
  CUDA_CHECK_LAUNCH("bf16_to_f32_kernel, n=" + std::to_string(n));
}

void cuda_f32_to_bf16(cudaStream_t stream, const float* in, uint16_t* out, int64_t n) {
  cuda_detail::check_count("cuda_f32_to_bf16", n);
  if (n == 0) return;  // a zero-block launch is an error
  STREAMQ_LAUNCH(f32_to_bf16_kernel, cuda_detail::elementwise_blocks(n),
                 cuda_detail::kElementwiseBlock, 0, stream)(in, out, n);
  CUDA_CHECK_LAUNCH("f32_to_bf16_kernel, n=" + std::to_string(n));
}

}  // namespace streamq
