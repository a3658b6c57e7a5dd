// Rotary position embedding on the CPU, HF's rotate_half convention: within
// each head, element i pairs with element i + head_dim/2. Its backward is the
// transpose of that rotation: the rotation by the opposite angle.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <string>

#include "src/core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace streamq::cpu {

void check_rope_args(int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim, const RopeTable& table) {
  const int64_t half = head_dim / 2;
  auto shapes = [&] {
    return "rope(nseq=" + std::to_string(nseq) + ", seqlen=" + std::to_string(seqlen) +
           ", nheads=" + std::to_string(nheads) + ", head_dim=" + std::to_string(head_dim) +
           ", table " + std::to_string(table.max_pos) + "x" + std::to_string(table.half_dim) +
           ")";
  };
  if (nseq < 0 || seqlen < 0 || nheads < 0 || head_dim < 0) {
    throw InternalError(shapes() + ": negative size");
  }
  if (head_dim % 2 != 0 || table.half_dim != half) {
    throw InternalError(shapes() + ": head_dim must be even and equal 2 * table.half_dim");
  }
  if (seqlen > table.max_pos) throw InternalError(shapes() + ": seqlen exceeds the table");
  if (seqlen > 0 && (table.cos == nullptr || table.sin == nullptr)) {
    throw InternalError(shapes() + ": table has no cos/sin data");
  }
}

namespace {

// The rotation by +angle (the forward: [[c, -s], [s, c]]) or, with kInverse,
// by -angle (its transpose, the backward), in place on every (lo, hi) pair.
template <bool kInverse>
void rotate_pairs(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                  const RopeTable& table) {
  check_rope_args(nseq, seqlen, nheads, head_dim, table);
  const int64_t half = head_dim / 2;

  const int64_t rows = nseq * seqlen;
  const int64_t width = nheads * head_dim;
  // Rows are tokens; a task's rows are disjoint from every other task's.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width));
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, grain),
                    [&](const tbb::blocked_range<int64_t>& r) {
    for (int64_t row = r.begin(); row < r.end(); ++row) {
      const int64_t pos = row % seqlen;  // every sequence starts at position 0
      const float* c = table.cos + pos * half;
      const float* s = table.sin + pos * half;
      float* xr = x + row * width;
      for (int64_t h = 0; h < nheads; ++h) {
        float* lo = xr + h * head_dim;
        float* hi = lo + half;
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = lo[i];
          const float x2 = hi[i];
          if constexpr (kInverse) {
            lo[i] = x1 * c[i] + x2 * s[i];
            hi[i] = x2 * c[i] - x1 * s[i];
          } else {
            lo[i] = x1 * c[i] - x2 * s[i];
            hi[i] = x2 * c[i] + x1 * s[i];
          }
        }
      }
    }
  });
}

}  // namespace

void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
          const RopeTable& table) {
  rotate_pairs</*kInverse=*/false>(x, nseq, seqlen, nheads, head_dim, table);
}

void rope_backward(float* d, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                   const RopeTable& table) {
  rotate_pairs</*kInverse=*/true>(d, nseq, seqlen, nheads, head_dim, table);
}

}  // namespace streamq::cpu
