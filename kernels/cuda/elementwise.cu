// GPU elementwise ops (see elementwise.cuh).
#include "kernels/cuda/elementwise.cuh"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
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

// With sig = 1 / (1 + exp(-g)): d/dg = dy u sig (1 + g (1 - sig)), d/du =
// dy g sig; the CPU twin's operations in its order, each rounded (_rn: no
// FMA contraction). No __restrict__: dgate or dup may alias an input (each
// element's three inputs are read before either write, by the same thread).
__global__ void swiglu_backward_kernel(const float* gate, const float* up, const float* dout, float* dgate,
                                       float* dup, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = gate[i];
    const float u = up[i];
    const float dy = dout[i];
    // expf as the forward; 0 for g < -88 (exp overflows), as on the CPU.
    const float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
    const float dsilu = __fmul_rn(sig, __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig))));
    dgate[i] = __fmul_rn(__fmul_rn(dy, u), dsilu);
    dup[i] = __fmul_rn(dy, __fmul_rn(g, sig));
  }
}

// No __restrict__: a caller may pass y == x (doubling y), which is still one
// read and one write per element by the same thread.
__global__ void add_inplace_kernel(float* y, const float* x, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    y[i] += x[i];
  }
}

// No __restrict__: out may alias a or b (one read of each, then one write,
// by the same thread).
__global__ void subtract_kernel(const float* a, const float* b, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = __fsub_rn(a[i], b[i]);
  }
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias,
                                int64_t total, int64_t cols) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    y[i] += bias[i % cols];
  }
}

}  // namespace

void cuda_swiglu(cudaStream_t stream, const float* gate, const float* up, float* out,
                 int64_t n) {
  cuda_detail::check_count("cuda_swiglu", n);
  if (n == 0) return;
  STREAMQ_LAUNCH(swiglu_kernel, cuda_detail::elementwise_blocks(n), cuda_detail::kElementwiseBlock,
                 0, stream)(gate, up, out, n);
  CUDA_CHECK_LAUNCH("swiglu_kernel, n=" + std::to_string(n));
}

void cuda_swiglu_backward(cudaStream_t stream, const float* gate, const float* up, const float* dout,
                          float* dgate, float* dup, int64_t n) {
  cuda_detail::check_count("cuda_swiglu_backward", n);
  if (n == 0) return;
  STREAMQ_LAUNCH(swiglu_backward_kernel, cuda_detail::elementwise_blocks(n), cuda_detail::kElementwiseBlock,
                 0, stream)(gate, up, dout, dgate, dup, n);
  CUDA_CHECK_LAUNCH("swiglu_backward_kernel, n=" + std::to_string(n));
}

void cuda_add_inplace(cudaStream_t stream, float* y, const float* x, int64_t n) {
  cuda_detail::check_count("cuda_add_inplace", n);
  if (n == 0) return;
  STREAMQ_LAUNCH(add_inplace_kernel, cuda_detail::elementwise_blocks(n),
                 cuda_detail::kElementwiseBlock, 0, stream)(y, x, n);
  CUDA_CHECK_LAUNCH("add_inplace_kernel, n=" + std::to_string(n));
}

void cuda_subtract(cudaStream_t stream, const float* a, const float* b, float* out, int64_t n) {
  cuda_detail::check_count("cuda_subtract", n);
  if (n == 0) return;
  STREAMQ_LAUNCH(subtract_kernel, cuda_detail::elementwise_blocks(n),
                 cuda_detail::kElementwiseBlock, 0, stream)(a, b, out, n);
  CUDA_CHECK_LAUNCH("subtract_kernel, n=" + std::to_string(n));
}

void cuda_add_bias(cudaStream_t stream, float* y, const float* bias, int64_t rows, int64_t cols) {
  cuda_detail::check_count("cuda_add_bias rows", rows);
  cuda_detail::check_count("cuda_add_bias cols", cols);
  if (rows == 0 || cols == 0) return;
  const int64_t total = rows * cols;
  STREAMQ_LAUNCH(add_bias_kernel, cuda_detail::elementwise_blocks(total),
                 cuda_detail::kElementwiseBlock, 0, stream)(y, bias, total, cols);
  CUDA_CHECK_LAUNCH("add_bias_kernel, rows=" + std::to_string(rows) +
                    ", cols=" + std::to_string(cols));
}

}  // namespace streamq
