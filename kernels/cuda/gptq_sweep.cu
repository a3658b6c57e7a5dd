// The GPU GPTQ sweep (see gptq_sweep.cuh). Layout of the work:
//   fit_groups_kernel   one CUDA block per (row, group): per-channel grids (on W
//                       before the dead fix) and static-group grids (after it)
//   sweep_block_kernel  one launch per block of b <= 128 columns; each CUDA
//                       block owns kSlabRows rows, so the sequential column loop
//                       needs no other block; dynamic group grids are fitted
//                       inside it when a group starts
//   cublasSgemm         W[:, i2:] += -E U[blk, i2:] (+ A P1[blk, i2:] + C P2[blk, i2:])
// Each thread runs exactly the CPU twin's scalar operations (shared code in
// kernels/gptq_sweep_problem.h, explicitly rounded, no FMA contraction), so a
// single-block sweep matches the twin bit for bit.
#include "kernels/cuda/gptq_sweep.cuh"

#include <climits>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_raii.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/launch_util.cuh"

namespace streamq {
namespace {

namespace sm = sweep_math;

// Rows per CUDA block of the fused kernel: 16 rows x (128 + 1) floats of W and
// three 16 x 128 coefficient panels is 32 KB of static shared memory, and
// m = 4096 gives 256 blocks (about two per H100 SM).
constexpr int kSlabRows = 16;
constexpr int kSweepThreads = 128;
constexpr int kFitThreads = 128;

enum GroupMode : int { kPerChannel = 0, kStatic = 1, kDynamic = 2 };

// The grid of every (row, group) of w[m, n]: groups of g columns in storage
// order (g = n: one per row). Losses of the MSE candidates live in dynamic
// shared memory, one float per candidate.
__global__ void __launch_bounds__(kFitThreads)
    fit_groups_kernel(const float* __restrict__ w, int64_t m, int64_t n, int64_t g, int64_t ngroups,
                      SweepGrid grid, float* __restrict__ scales, float* __restrict__ zeros) {
  STREAMQ_SHARED(float[kFitThreads], smin);
  STREAMQ_SHARED(float[kFitThreads], smax);
  STREAMQ_DYNAMIC_SHARED(float, losses);
  const int tid = threadIdx.x;
  const int64_t row = blockIdx.x / ngroups, gi = blockIdx.x % ngroups;
  const int64_t c0 = gi * g, len = (c0 + g < n ? c0 + g : n) - c0;
  const float* x = w + row * n + c0;
  // Min and max are exact and order-free, so a tree gives the twin's values.
  float lo = 0, hi = 0;
  for (int64_t i = tid; i < len; i += blockDim.x) {
    lo = sm::min_of(lo, x[i]);
    hi = sm::max_of(hi, x[i]);
  }
  smin[tid] = lo;
  smax[tid] = hi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (tid < s) {
      smin[tid] = sm::min_of(smin[tid], smin[tid + s]);
      smax[tid] = sm::max_of(smax[tid], smax[tid + s]);
    }
    __syncthreads();
  }
  float xmin = smin[0], xmax = smax[0];
  SweepParams<float> p;
  if (!grid.mse) {
    if (tid != 0) return;
    p = sm::from_range(grid, xmin, xmax);
  } else {
    sm::mse_symmetrize(grid, &xmin, &xmax);
    // Each candidate's loss is one thread's sequential sum, as in the twin.
    for (int i = tid; i < grid.mse_steps; i += blockDim.x)
      losses[i] = sm::mse_loss(grid, sm::mse_candidate(grid, xmin, xmax, i), x, len, int64_t{1});
    __syncthreads();
    if (tid != 0) return;
    p = sm::mse_pick(grid, xmin, xmax, losses);
  }
  scales[gi * m + row] = p.scale;
  zeros[gi * m + row] = p.zero;
}

__global__ void zero_dead_kernel(float* __restrict__ w, int64_t m, int64_t n, const uint8_t* __restrict__ dead) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n; i += stride)
    if (dead[i % n]) w[i] = 0.0f;
}

// wp[row, c] = w[row, perm[c]]: processing order.
__global__ void gather_columns_kernel(const float* __restrict__ w, float* __restrict__ wp, int64_t m, int64_t n,
                                      const int32_t* __restrict__ perm) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n; i += stride)
    wp[i] = w[(i / n) * n + perm[i % n]];
}

struct BlockArgs {
  int64_t m, n, i1, b, g;  // b: this block's width; g: group size (n per channel)
  int mode;                // GroupMode
  bool has_p1, has_p2, p1_original;
  SweepGrid grid;
  const float* u;          // [n, n]
  const float* p1;         // [n, n] or null
  const float* p2;         // [n, n] or null
  const float* w0;         // [m, n] processing order, or null
  const int32_t* perm;     // [n]
  float* w;                // [m, n] processing order, updated
  uint8_t* codes;          // [m, n] original order
  float* q;                // [m, n] original order
  float* scales;           // [ngroups, m]
  float* zeros;            // [ngroups, m]
  float* e_panel;          // [m, b]
  float* a_panel;          // [m, b] or null
  float* c_panel;          // [m, b] or null
  float* gbuf;             // [m, g] a group's current values (dynamic groups)
  float* lbuf;             // [m, mse_steps] MSE losses (dynamic groups)
  unsigned long long* bad; // first non-finite output index (row * n + original column)
};

using Slab = float[kSweepMaxBlock];

// Dynamic groups: the grid of the group starting at column i1 + j, fitted on
// the current weights: in-block columns from the slab (already updated by
// columns < j), later columns from W plus the updates of this block's columns
// < j they still owe (summed in the twin's order). Called by the whole CUDA block.
__device__ void fit_group(const BlockArgs& a, const float (*wblk)[kSweepMaxBlock + 1], const Slab* eblk,
                          const Slab* ablk, const Slab* cblk, float* lo_s, float* hi_s, int64_t row0, int rows,
                          int j) {
  const int tid = threadIdx.x;
  const int64_t n = a.n, col = a.i1 + j, i2 = a.i1 + a.b;
  const int64_t ce = col + a.g < n ? col + a.g : n, len = ce - col;
  for (int64_t idx = tid; idx < rows * len; idx += blockDim.x) {
    const int r = static_cast<int>(idx / len);
    const int64_t c = col + idx % len, row = row0 + r;
    float v;
    if (c < i2) {
      v = wblk[r][c - a.i1];
    } else {
      v = a.w[row * n + c];
      for (int jj = 0; jj < j; ++jj) {
        const int64_t src = (a.i1 + jj) * n + c;
        v = sm::add(v, sm::update_term(eblk[r][jj], a.u[src], a.has_p1, ablk[r][jj], a.has_p1 ? a.p1[src] : 0.0f,
                                       a.has_p2, cblk[r][jj], a.has_p2 ? a.p2[src] : 0.0f));
      }
    }
    a.gbuf[row * a.g + (c - col)] = v;
  }
  __syncthreads();
  if (tid < rows) {
    float lo, hi;
    sm::range_of(a.gbuf + (row0 + tid) * a.g, len, int64_t{1}, &lo, &hi);
    if (a.grid.mse) sm::mse_symmetrize(a.grid, &lo, &hi);
    lo_s[tid] = lo;
    hi_s[tid] = hi;
  }
  __syncthreads();
  const int steps = a.grid.mse_steps;
  if (a.grid.mse) {
    for (int64_t idx = tid; idx < static_cast<int64_t>(rows) * steps; idx += blockDim.x) {
      const int r = static_cast<int>(idx / steps), i = static_cast<int>(idx % steps);
      const int64_t row = row0 + r;
      a.lbuf[row * steps + i] =
          sm::mse_loss(a.grid, sm::mse_candidate(a.grid, lo_s[r], hi_s[r], i), a.gbuf + row * a.g, len, int64_t{1});
    }
    __syncthreads();
  }
  if (tid < rows) {
    const int64_t row = row0 + tid;
    const SweepParams<float> p = a.grid.mse ? sm::mse_pick(a.grid, lo_s[tid], hi_s[tid], a.lbuf + row * steps)
                                            : sm::from_range(a.grid, lo_s[tid], hi_s[tid]);
    // Read back by this same thread when it quantizes: no barrier needed.
    a.scales[(col / a.g) * a.m + row] = p.scale;
    a.zeros[(col / a.g) * a.m + row] = p.zero;
  }
  // gbuf, lbuf, lo_s and hi_s are next written at a later group start, after
  // the quantize step's barriers.
}

__global__ void __launch_bounds__(kSweepThreads) sweep_block_kernel(const BlockArgs a) {
  STREAMQ_SHARED(float[kSlabRows][kSweepMaxBlock + 1], wblk);  // +1: rows start in different banks
  STREAMQ_SHARED(float[kSlabRows][kSweepMaxBlock], eblk);
  STREAMQ_SHARED(float[kSlabRows][kSweepMaxBlock], ablk);
  STREAMQ_SHARED(float[kSlabRows][kSweepMaxBlock], cblk);
  STREAMQ_SHARED(float[kSlabRows], lo_s);
  STREAMQ_SHARED(float[kSlabRows], hi_s);
  const int tid = threadIdx.x;
  const int64_t n = a.n, i1 = a.i1, row0 = static_cast<int64_t>(blockIdx.x) * kSlabRows;
  const int rows = static_cast<int>(a.m - row0 < kSlabRows ? a.m - row0 : kSlabRows);
  const int b = static_cast<int>(a.b);
  for (int idx = tid; idx < rows * b; idx += blockDim.x) {
    const int r = idx / b, k = idx % b;
    wblk[r][k] = a.w[(row0 + r) * n + i1 + k];
  }
  __syncthreads();
  for (int j = 0; j < b; ++j) {
    const int64_t col = i1 + j;
    if (a.mode == kDynamic && col % a.g == 0) fit_group(a, wblk, eblk, ablk, cblk, lo_s, hi_s, row0, rows, j);
    if (tid < rows) {
      const int64_t row = row0 + tid;
      const int64_t gi = a.mode == kPerChannel ? 0 : (a.mode == kStatic ? a.perm[col] / a.g : col / a.g);
      const SweepParams<float> p{a.scales[gi * a.m + row], a.zeros[gi * a.m + row]};
      const float x = wblk[tid][j];
      const int code = sm::code_of(a.grid, x, p);
      const float qv = sm::dequant(code, p);
      const int64_t out = row * n + a.perm[col];
      a.codes[out] = static_cast<uint8_t>(code);
      a.q[out] = qv;
      if (!sm::finite(x) || !sm::finite(qv)) atomicMin(a.bad, static_cast<unsigned long long>(out));
      const float w0 = a.w0 ? a.w0[row * n + col] : 0.0f;
      eblk[tid][j] = sm::div(sm::sub(x, qv), a.u[col * n + col]);
      ablk[tid][j] = a.has_p1 ? (a.p1_original ? w0 : x) : 0.0f;
      cblk[tid][j] = a.has_p2 ? sm::sub(w0, x) : 0.0f;
    }
    __syncthreads();
    // Rank-1 update of the rest of the block: consecutive threads take
    // consecutive columns (coalesced U/P rows, conflict-free slab rows).
    const int len = b - j - 1;
    const int64_t urow = col * n + i1;
    for (int idx = tid; idx < rows * len; idx += blockDim.x) {
      const int r = idx / len, k = j + 1 + idx % len;
      const float d = sm::update_term(eblk[r][j], a.u[urow + k], a.has_p1, ablk[r][j],
                                      a.has_p1 ? a.p1[urow + k] : 0.0f, a.has_p2, cblk[r][j],
                                      a.has_p2 ? a.p2[urow + k] : 0.0f);
      wblk[r][k] = sm::add(wblk[r][k], d);
    }
    __syncthreads();
  }
  for (int idx = tid; idx < rows * b; idx += blockDim.x) {
    const int r = idx / b, k = idx % b;
    const int64_t at = (row0 + r) * b + k;
    a.e_panel[at] = eblk[r][k];
    if (a.has_p1) a.a_panel[at] = ablk[r][k];
    if (a.has_p2) a.c_panel[at] = cblk[r][k];
  }
}

void launch_fit(cudaStream_t stream, const float* w, int64_t m, int64_t n, int64_t g, const SweepGrid& grid,
                float* scales, float* zeros) {
  const int64_t ngroups = (n + g - 1) / g;
  const size_t shared = grid.mse ? sizeof(float) * static_cast<size_t>(grid.mse_steps) : 0;
  STREAMQ_LAUNCH(fit_groups_kernel, static_cast<unsigned>(m * ngroups), kFitThreads, shared, stream)(
      w, m, n, g, ngroups, grid, scales, zeros);
  CUDA_CHECK_LAUNCH("fit_groups_kernel, m=" + std::to_string(m) + " groups=" + std::to_string(ngroups));
}

template <typename T>
DeviceBuffer<T> upload(const T* host, size_t count, cudaStream_t stream) {
  DeviceBuffer<T> d(host ? count : 0);
  if (host && count > 0) CUDA_CHECK(cudaMemcpyAsync(d.get(), host, d.bytes(), cudaMemcpyHostToDevice, stream));
  return d;
}

template <typename T>
void download(T* host, const DeviceBuffer<T>& d, cudaStream_t stream) {
  CUDA_CHECK(cudaMemcpyAsync(host, d.get(), d.bytes(), cudaMemcpyDeviceToHost, stream));
}

}  // namespace

void cuda_gptq_sweep_device(cudaStream_t stream, cublasHandle_t cublas, const SweepProblem& p,
                            const SweepOutput& out) {
  validate_sweep_problem(p, out, "cuda_gptq_sweep", /*host_pointers=*/false);
  const int64_t m = p.m, n = p.n;
  if (m == 0 || n == 0) return;
  // cuBLAS takes int sizes; the fit kernel's grid is m x groups blocks.
  if (n > INT_MAX || m * p.ngroups() > INT_MAX)
    throw InternalError("cuda_gptq_sweep: [" + std::to_string(m) + ", " + std::to_string(n) + "] is too large");
  if (!cublas) throw InternalError("cuda_gptq_sweep: no cuBLAS handle");
  CUBLAS_CHECK(cublasSetStream(cublas, stream));
  CUBLAS_CHECK(cublasSetPointerMode(cublas, CUBLAS_POINTER_MODE_HOST));
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  CUBLAS_CHECK(cublasGetMathMode(cublas, &math));
  // Modes are values 0..3 (pedantic is 2, TF32 3) plus flag bits from 16 up.
  if ((static_cast<int>(math) & 0xF) == CUBLAS_TF32_TENSOR_OP_MATH)
    throw InternalError("cuda_gptq_sweep: the cuBLAS handle allows TF32; the sweep is specified in float32");

  const bool per_channel = p.group < 0, dynamic = !per_channel && !p.static_groups;
  const int64_t g = per_channel ? n : p.group, bs = p.blocksize, mn = m * n;
  const bool has_p1 = p.p1 != nullptr, has_p2 = p.p2 != nullptr;
  DeviceBuffer<float> w_orig(static_cast<size_t>(mn)), w_work(static_cast<size_t>(mn));
  DeviceBuffer<float> w0(p.needs_w0() ? static_cast<size_t>(mn) : 0);
  DeviceBuffer<float> e_panel(static_cast<size_t>(m * bs));
  DeviceBuffer<float> a_panel(has_p1 ? static_cast<size_t>(m * bs) : 0);
  DeviceBuffer<float> c_panel(has_p2 ? static_cast<size_t>(m * bs) : 0);
  DeviceBuffer<float> gbuf(dynamic ? static_cast<size_t>(m * g) : 0);
  DeviceBuffer<float> lbuf(dynamic && p.grid.mse ? static_cast<size_t>(m * p.grid.mse_steps) : 0);
  DeviceBuffer<unsigned long long> bad(1);

  CUDA_CHECK(cudaMemcpyAsync(w_orig.get(), p.w, w_orig.bytes(), cudaMemcpyDeviceToDevice, stream));
  // Per-channel grids before the dead fix, static-group grids after it (gptq_quantize's order).
  if (per_channel) launch_fit(stream, w_orig.get(), m, n, n, p.grid, out.scales, out.zeros);
  const unsigned blocks = cuda_detail::elementwise_blocks(mn);
  if (p.dead) {
    STREAMQ_LAUNCH(zero_dead_kernel, blocks, cuda_detail::kElementwiseBlock, 0, stream)(w_orig.get(), m, n, p.dead);
    CUDA_CHECK_LAUNCH("zero_dead_kernel");
  }
  if (p.static_groups) launch_fit(stream, w_orig.get(), m, n, g, p.grid, out.scales, out.zeros);
  STREAMQ_LAUNCH(gather_columns_kernel, blocks, cuda_detail::kElementwiseBlock, 0, stream)(w_orig.get(), w_work.get(),
                                                                                           m, n, p.perm);
  CUDA_CHECK_LAUNCH("gather_columns_kernel");
  if (p.needs_w0())
    CUDA_CHECK(cudaMemcpyAsync(w0.get(), w_work.get(), w0.bytes(), cudaMemcpyDeviceToDevice, stream));
  CUDA_CHECK(cudaMemsetAsync(bad.get(), 0xFF, bad.bytes(), stream));  // all ones: none yet

  BlockArgs a{};
  a.m = m;
  a.n = n;
  a.g = g;
  a.mode = per_channel ? kPerChannel : (p.static_groups ? kStatic : kDynamic);
  a.has_p1 = has_p1;
  a.has_p2 = has_p2;
  a.p1_original = p.p1_original;
  a.grid = p.grid;
  a.u = p.u;
  a.p1 = p.p1;
  a.p2 = p.p2;
  a.w0 = w0.get();
  a.perm = p.perm;
  a.w = w_work.get();
  a.codes = out.codes;
  a.q = out.q;
  a.scales = out.scales;
  a.zeros = out.zeros;
  a.e_panel = e_panel.get();
  a.a_panel = a_panel.get();
  a.c_panel = c_panel.get();
  a.gbuf = gbuf.get();
  a.lbuf = lbuf.get();
  a.bad = bad.get();
  const unsigned slabs = static_cast<unsigned>((m + kSlabRows - 1) / kSlabRows);
  const float minus_one = -1.0f, one = 1.0f;
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = i1 + bs < n ? i1 + bs : n, b = i2 - i1;
    a.i1 = i1;
    a.b = b;
    STREAMQ_LAUNCH(sweep_block_kernel, slabs, kSweepThreads, 0, stream)(a);
    CUDA_CHECK_LAUNCH("sweep_block_kernel, columns " + std::to_string(i1) + ".." + std::to_string(i2));
    if (i2 == n) continue;
    // Row-major X[r, c] is column-major X^T: W[:, i2:]^T += alpha U[i1:i2, i2:]^T panel^T.
    const int rest = static_cast<int>(n - i2), mi = static_cast<int>(m), bi = static_cast<int>(b),
              ld = static_cast<int>(n);
    CUBLAS_CHECK(cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, rest, mi, bi, &minus_one, p.u + i1 * n + i2, ld,
                             e_panel.get(), bi, &one, w_work.get() + i2, ld));
    if (has_p1)
      CUBLAS_CHECK(cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, rest, mi, bi, &one, p.p1 + i1 * n + i2, ld,
                               a_panel.get(), bi, &one, w_work.get() + i2, ld));
    if (has_p2)
      CUBLAS_CHECK(cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, rest, mi, bi, &one, p.p2 + i1 * n + i2, ld,
                               c_panel.get(), bi, &one, w_work.get() + i2, ld));
  }
  unsigned long long first_bad = 0;
  CUDA_CHECK(cudaMemcpyAsync(&first_bad, bad.get(), sizeof(first_bad), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (first_bad != ~0ULL)
    throw InternalError("cuda_gptq_sweep: non-finite weight at row " + std::to_string(first_bad / n) +
                        ", column " + std::to_string(first_bad % n));
}

void cuda_gptq_sweep(const SweepProblem& p, const SweepOutput& out) {
  validate_sweep_problem(p, out, "cuda_gptq_sweep", /*host_pointers=*/true);
  const int64_t m = p.m, n = p.n;
  if (m == 0 || n == 0) return;
  CudaStream stream;
  const cudaStream_t s = stream.get();
  CublasHandle cublas(s);  // kernels/cuda/cuda_raii.h
  const size_t mn = static_cast<size_t>(m * n), nn = static_cast<size_t>(n * n),
               gm = static_cast<size_t>(p.ngroups() * m);
  const DeviceBuffer<float> w = upload(p.w, mn, s), u = upload(p.u, nn, s), p1 = upload(p.p1, nn, s),
                            p2 = upload(p.p2, nn, s);
  const DeviceBuffer<int32_t> perm = upload(p.perm, static_cast<size_t>(n), s);
  const DeviceBuffer<uint8_t> dead = upload(p.dead, static_cast<size_t>(n), s);
  DeviceBuffer<uint8_t> codes(mn);
  DeviceBuffer<float> q(mn), scales(gm), zeros(gm);
  SweepProblem dp = p;
  dp.w = w.get();
  dp.u = u.get();
  dp.p1 = p1.get();
  dp.p2 = p2.get();
  dp.perm = perm.get();
  dp.dead = dead.get();
  cuda_gptq_sweep_device(s, cublas.get(), dp, {codes.get(), q.get(), scales.get(), zeros.get()});
  download(out.codes, codes, s);
  download(out.q, q, s);
  download(out.scales, scales, s);
  download(out.zeros, zeros, s);
  stream.synchronize();
}

}  // namespace streamq
