// Element-type conversions on the CPU (twin of kernels/cuda/convert.cu):
// bf16 -> float32, what a linear whose weight is resident in bf16 runs
// before its GEMM. The widening is exact (bf16 is float32's top 16 bits), so
// every backend must agree bit for bit; parallel over disjoint ranges.
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel.h"

namespace streamq::cpu {

void bf16_to_f32(const uint16_t* in, float* out, int64_t n) {
  check_nonnegative("bf16_to_f32", n);
  parallel_chunks(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint32_t u = static_cast<uint32_t>(in[i]) << 16;
      std::memcpy(out + i, &u, sizeof u);  // NaN payloads and signs kept: no arithmetic touches the bits
    }
  });
}

}  // namespace streamq::cpu
