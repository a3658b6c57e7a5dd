// The CPU Backend: a thin class forwarding each op to its free function in
// the kernels/cpu file of its family, plus the shared argument checks; its
// memory is aligned host memory under a MemoryLedger, its copies are memcpy
// (already complete when they return, so synchronize() has nothing to wait for).
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "src/core/error.h"
#include "src/core/large_blocks.h"

extern "C" void openblas_set_num_threads(int num_threads);
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/gptq_sweep.h"

namespace streamq::cpu {

int checked_int(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > INT_MAX) {
    throw InternalError(std::string(op) + ": " + what + " = " + std::to_string(v) +
                        " is negative or exceeds the 32-bit BLAS/LAPACK index range");
  }
  return static_cast<int>(v);
}

namespace {

// Cache-line alignment: no false sharing between buffers that TBB tasks
// write, and what vectorized loops prefer; std::aligned_alloc wants the size
// rounded up to it.
constexpr uint64_t kCpuBufferAlignment = 64;

// Buffers of a MiB and more are large blocks (page-aligned), kept after free
// for the next chunk's buffer of the same size (src/core/large_blocks.h).
void* cpu_allocate(uint64_t bytes) {
  if (kLargeBlocksInUse && bytes >= kLargeBlockMinBytes) return large_block_allocate(static_cast<size_t>(bytes));
  const uint64_t rounded = (bytes + kCpuBufferAlignment - 1) / kCpuBufferAlignment * kCpuBufferAlignment;
  return std::aligned_alloc(kCpuBufferAlignment, static_cast<size_t>(rounded));  // nullptr: no room
}
void cpu_free(void* p) {
  if (!free_if_large_block(p)) std::free(p);
}

class CpuBackend final : public Backend {
 public:
  // OpenBLAS runs single-threaded; parallelism comes from oneTBB tiles (see
  // gemm.cpp), which keeps results independent of the thread count.
  explicit CpuBackend(const CpuBackendOptions& options)
      : memory_(options.memory_limit, [](uint64_t bytes, const std::string&) { return cpu_allocate(bytes); }, [](void* p) { cpu_free(p); },
                "the CPU backend's memory limit (CpuBackendOptions)", "CPU backend memory pool"),
        // Nothing to pin for: copies are memcpy. Unlimited, as host memory is
        // budgeted by the pipeline's memory plan.
        pinned_(UINT64_MAX, [](uint64_t bytes, const std::string&) { return cpu_allocate(bytes); },
                [](void* p) { cpu_free(p); }, "--host-mem-limit", "CPU backend pinned host memory") {
    openblas_set_num_threads(1);
  }

  std::string name() const override { return "cpu"; }
  // The fallback and the reference: every op.
  bool supports(Op) const override { return true; }

  MemoryLedger& memory() override { return memory_; }
  bool host_addressable() const override { return true; }
  MemoryLedger& pinned_memory() override { return pinned_; }
  void copy_from_host(void* dst, const void* host_src, uint64_t bytes) override {
    if (bytes > 0) std::memcpy(dst, host_src, static_cast<size_t>(bytes));
  }
  void copy_to_host(void* host_dst, const void* src, uint64_t bytes) override {
    if (bytes > 0) std::memcpy(host_dst, src, static_cast<size_t>(bytes));
  }
  void copy_within(void* dst, const void* src, uint64_t bytes) override {
    if (bytes > 0) std::memmove(dst, src, static_cast<size_t>(bytes));
  }
  void fill_bytes(void* dst, unsigned char value, uint64_t bytes) override {
    if (bytes > 0) std::memset(dst, value, static_cast<size_t>(bytes));
  }
  void synchronize() override {}

  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c,
            int64_t ldc) override {
    cpu::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
            int64_t lda, const double* b, int64_t ldb, double beta, double* c,
            int64_t ldc) override {
    cpu::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void bf16_to_f32(const uint16_t* in, float* out, int64_t n) override { cpu::bf16_to_f32(in, out, n); }
  void gram_bf16_accumulate(const uint16_t* x_bf16, int64_t n, int64_t tokens, float* h,
                            float beta) override {
    cpu::gram_bf16_accumulate(x_bf16, n, tokens, h, beta);
  }

  bool cholesky_lower(double* a, int64_t n) override { return cpu::cholesky_lower(a, n); }
  void svd(double* a, int64_t m, int64_t n, double* s, double* u, double* vt) override { cpu::svd(a, m, n, s, u, vt); }
  void invert_lower_triangular(double* l, int64_t n) override {
    cpu::invert_lower_triangular(l, n);
  }
  bool inverse_upper_factor(float* h, int64_t n) override { return cpu::inverse_upper_factor(h, n); }
  void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs,
                     bool inverse) override {
    cpu::hadamard_rows(x, rows, n, hm, m, signs, inverse);
  }
  bool inverse_upper_factor(double* h, int64_t n) override {
    return cpu::inverse_upper_factor(h, n);
  }

  void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
               float eps) override {
    cpu::rmsnorm(x, w, y, rows, dim, eps);
  }
  void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
            const RopeTable& table) override {
    cpu::rope(x, nseq, seqlen, nheads, head_dim, table);
  }
  void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq,
                 int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) override {
    cpu::attention(q, k, v, out, nseq, seqlen, nheads, nkv, head_dim);
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override {
    cpu::swiglu(gate, up, out, n);
  }
  void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t dim,
                        float eps) override {
    cpu::rmsnorm_backward(x, w, dy, dx, rows, dim, eps);
  }
  void rope_backward(float* d, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                     const RopeTable& table) override {
    cpu::rope_backward(d, nseq, seqlen, nheads, head_dim, table);
  }
  void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq, float* dk,
                          float* dv, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                          int64_t head_dim) override {
    cpu::attention_backward(q, k, v, dout, dq, dk, dv, nseq, seqlen, nheads, nkv, head_dim);
  }
  void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                       int64_t n) override {
    cpu::swiglu_backward(gate, up, dout, dgate, dup, n);
  }
  void add_inplace(float* y, const float* x, int64_t n) override { cpu::add_inplace(y, x, n); }
  void subtract(const float* a, const float* b, float* out, int64_t n) override { cpu::subtract(a, b, out, n); }
  void fake_quant_ste(const float* w, int64_t rows, int64_t cols, int64_t group, const double* params,
                      int32_t maxq, bool free_min, float* wq, uint8_t* mask) override {
    cpu::fake_quant_ste(w, rows, cols, group, params, maxq, free_min, wq, mask);
  }
  void ste_mask_grad(const uint8_t* mask, float* g, int64_t n) override { cpu::ste_mask_grad(mask, g, n); }
  void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                          int64_t band, float* ud) override {
    cpu::sde_banded_product(u, s, params, rows, rank, band, ud);
  }
  void sde_band_grad(const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band,
                     float* dparams) override {
    cpu::sde_band_grad(m, vt, rank, cols, band, dparams);
  }
  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    cpu::add_bias(y, bias, rows, cols);
  }

  void gptq_sweep(const SweepProblem& p, const SweepOutput& out, SweepPrecision precision) override {
    if (precision == SweepPrecision::F32)
      cpu_gptq_sweep32(p, out);
    else
      cpu_gptq_sweep64(p, out);
  }

 private:
  MemoryLedger memory_;
  MemoryLedger pinned_;
};

}  // namespace
}  // namespace streamq::cpu

namespace streamq {

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<cpu::CpuBackend>(options);
}

}  // namespace streamq
