// The emulated device: pointer checks on the calling thread when work is
// queued, the work itself (CPU kernels, copies) on the device's thread in
// queue order, the first error kept and rethrown by synchronize().
#include "kernels/emulated/emulated_backend.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <thread>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/gptq_sweep.h"
#include "kernels/emulated/device_memory.h"
#include "scheduler/trace.h"
#include "src/core/error.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace streamq {
namespace {

// Bytes of a row-major [rows, cols] matrix with row stride ld: the extent an
// op touches. Negative sizes are left to the kernels' own checks (they throw).
uint64_t matrix_bytes(int64_t rows, int64_t cols, int64_t ld, uint64_t elem) {
  if (rows <= 0 || cols <= 0 || ld < cols) return rows > 0 && cols > 0 ? static_cast<uint64_t>(rows * cols) * elem : 0;
  return static_cast<uint64_t>((rows - 1) * ld + cols) * elem;
}
uint64_t count_bytes(int64_t n, uint64_t elem) { return n > 0 ? static_cast<uint64_t>(n) * elem : 0; }

class EmulatedBackend final : public Backend {
 public:
  explicit EmulatedBackend(const EmulatedBackendOptions& o)
      : device_(o.memory_bytes),
        memory_(o.memory_bytes, [this](uint64_t bytes, const std::string& what) { return device_.allocate(bytes, what); },
                // As cudaFree: queued work that may still use the block finishes first.
                [this](void* p) {
                  drain();
                  forget(p);
                  device_.free(p);
                },
                "--gpu-mem-limit", "emulated device memory"),
        // Pinned host memory: plain aligned host memory the device remembers
        // as pinned, so its copies to and from it run asynchronously.
        pinned_memory_(UINT64_MAX, [this](uint64_t bytes, const std::string&) { return pin(bytes); },
                       [this](void* p) { unpin(p); }, "--host-mem-limit", "emulated device's pinned host memory"),
        pcie_gbps_(o.pcie_gbps) {
    if (o.memory_bytes == 0) throw InputError("--device emulated needs --gpu-mem-limit (the emulated device's memory)");
    openblas_set_num_threads(1);  // as the CPU backend: parallelism from oneTBB only
    for (int i = 0; i < kStreams; ++i) queues_[i].worker = std::thread([this, i] { run_queue(i); });
  }
  ~EmulatedBackend() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      paused_ = false;
    }
    cv_.notify_all();
    for (Queue& q : queues_) q.worker.join();
  }

  std::string name() const override { return "emulated"; }
  bool supports(Op) const override { return true; }
  MemoryLedger& memory() override { return memory_; }
  bool host_addressable() const override { return false; }
  MemoryLedger& pinned_memory() override { return pinned_memory_; }

  void copy_from_host(void* dst, const void* host_src, uint64_t bytes) override {
    copy_from_host_on(Stream::Compute, dst, host_src, bytes);
  }
  void copy_from_host_on(Stream s, void* dst, const void* host_src, uint64_t bytes) override {
    check(dst, bytes, "copy_from_host", "dst");
    if (bytes == 0) return touched().clear();
    if (device_.in_address_space(host_src)) {
      touched().clear();
      throw InternalError("emulated device: copy_from_host: argument host_src is device memory; use copy_within");
    }
    if (!pinned(host_src, bytes)) {
      // Pageable memory, as CUDA copies it: the call returns once the copy
      // has run (CUDA stages the bytes through a buffer of its own; either
      // way the host may reuse its source at once), so there is nothing to
      // check later, and no overlap with the caller.
      enqueue(s, "copy_from_host", trace_cat::kH2D, bytes, [=, this] {
        std::memcpy(dst, host_src, bytes);
        throttle(bytes);
      });
      // Not a host wait: on CUDA the copy's DMA to the device may still be
      // running when the call returns, so other streams learn nothing from
      // it (the stream-order checks stay as strict as for a pinned upload).
      return wait_queued(s);
    }
    const uint64_t hash = XXH3_64bits(host_src, bytes);
    const HostRange source{reinterpret_cast<uintptr_t>(host_src), reinterpret_cast<uintptr_t>(host_src) + bytes};
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_sources_.insert(source);
    }
    enqueue(s, "copy_from_host", trace_cat::kH2D, bytes, [=, this] {
      if (XXH3_64bits(host_src, bytes) != hash) {
        throw InternalError("emulated device: copy_from_host of " + std::to_string(bytes) +
                            " bytes: the host source changed between queueing the copy and the copy; keep it "
                            "unchanged until synchronize()");
      }
      std::memcpy(dst, host_src, bytes);
      {
        std::lock_guard<std::mutex> lock(mu_);
        pending_sources_.erase(pending_sources_.find(source));
      }
      throttle(bytes);
    });
  }
  void copy_to_host(void* host_dst, const void* src, uint64_t bytes) override {
    copy_to_host_on(Stream::Compute, host_dst, src, bytes);
  }
  void copy_to_host_on(Stream s, void* host_dst, const void* src, uint64_t bytes) override {
    check(src, bytes, "copy_to_host", "src");
    if (bytes == 0) return touched().clear();
    if (device_.in_address_space(host_dst)) {
      touched().clear();
      throw InternalError("emulated device: copy_to_host: argument host_dst is device memory; use copy_within");
    }
    if (!pinned(host_dst, bytes)) {
      // Pageable memory: returns once the copy has run, as a CUDA download
      // into pageable memory does.
      enqueue(s, "copy_to_host", trace_cat::kD2H, bytes, [=, this] {
        std::memcpy(host_dst, src, bytes);
        throttle(bytes);
      });
      return wait_host(record(s));
    }
    // Pinned memory, asynchronous: what a premature host read sees is NaN
    // for floats, 0xFF bytes otherwise;
    // except where a queued upload still reads those bytes (a chunk
    // downloaded back into the host buffer it was uploaded from, ordered
    // after the upload by events): the download writes them only once it
    // runs, after that upload.
    {
      std::lock_guard<std::mutex> lock(mu_);
      const uintptr_t lo = reinterpret_cast<uintptr_t>(host_dst), hi = lo + bytes;
      const bool read_by_an_upload = std::any_of(pending_sources_.begin(), pending_sources_.end(),
                                                 [&](const HostRange& r) { return r.first < hi && lo < r.second; });
      if (!read_by_an_upload) std::memset(host_dst, 0xFF, bytes);
    }
    enqueue(s, "copy_to_host", trace_cat::kD2H, bytes, [=, this] {
      std::memcpy(host_dst, src, bytes);
      throttle(bytes);
    });
  }
  void copy_within(void* dst, const void* src, uint64_t bytes) override {
    check(dst, bytes, "copy_within", "dst");
    check(src, bytes, "copy_within", "src");
    if (bytes > 0) enqueue("copy_within", "d2d", bytes, [=] { std::memmove(dst, src, bytes); });
  }
  void fill_bytes(void* dst, unsigned char value, uint64_t bytes) override {
    check(dst, bytes, "fill_bytes", "dst");
    if (bytes > 0) enqueue("fill_bytes", trace_cat::kCompute, bytes, [=] { std::memset(dst, value, bytes); });
  }
  void set_trace(TraceRecorder* trace) override {
    drain();  // work already queued is recorded by the recorder it was queued under, or none
    std::lock_guard<std::mutex> lock(mu_);
    trace_ = trace;
  }
  void set_paused(bool paused) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      paused_ = paused;
    }
    cv_.notify_all();
  }

  // The first error of the work queued since the last synchronize() is
  // thrown here (work queued after it was skipped), then cleared: an op's
  // data error (a NaN in a factorization) leaves the device usable, as a
  // CUDA error reported through devInfo does. Argument errors never get
  // here: they throw when the op is called.
  void synchronize() override {
    drain();
    std::lock_guard<std::mutex> lock(mu_);
    for (int t = 0; t < kStreams; ++t) host_known_[t] = queues_[t].queued;  // everything has passed
    rethrow_error_locked();
  }

  Event record(Stream s) override {
    std::lock_guard<std::mutex> lock(mu_);
    const int si = static_cast<int>(s);
    fold_host_knowledge_locked(si);
    Event e{s, queues_[si].queued};
    if (e.seq == 0) return e;  // nothing queued on s yet: passed already
    Clock clock = known_[si];
    clock[si] = e.seq;
    event_clocks_[{si, e.seq}] = clock;
    return e;
  }
  void wait(Stream s, const Event& e) override {
    if (e.seq == 0) return;
    const int si = static_cast<int>(s), ti = static_cast<int>(e.stream);
    {
      std::lock_guard<std::mutex> lock(mu_);
      const Clock& clock = clock_of_locked(e);
      for (int i = 0; i < kStreams; ++i) known_[si][i] = std::max(known_[si][i], clock[i]);
      if (si == ti || queues_[ti].done >= e.seq) return;  // in stream order already, or passed
      Queue& q = queues_[si];
      Work w{"wait event", trace_cat::kWait, 0, nullptr, ++q.queued, e};
      q.items.push_back(std::move(w));
    }
    cv_.notify_all();
  }
  void wait_host(const Event& e) override {
    if (e.seq == 0) return;
    std::unique_lock<std::mutex> lock(mu_);
    const int ti = static_cast<int>(e.stream);
    const Clock clock = clock_of_locked(e);
    cv_.wait(lock, [&] { return queues_[ti].done >= e.seq; });
    for (int i = 0; i < kStreams; ++i) host_known_[i] = std::max(host_known_[i], clock[i]);
    rethrow_error_locked();
  }

  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    cpu::check_gemm_args("gemm<f32>", ta, tb, m, n, k, lda, ldb, ldc);
    check_gemm("gemm_f32", ta, tb, m, n, k, a, lda, b, ldb, c, ldc, sizeof(float));
    enqueue("gemm", trace_cat::kCompute, 0, [=] { cpu::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
            const double* b, int64_t ldb, double beta, double* c, int64_t ldc) override {
    cpu::check_gemm_args("gemm<f64>", ta, tb, m, n, k, lda, ldb, ldc);
    check_gemm("gemm_f64", ta, tb, m, n, k, a, lda, b, ldb, c, ldc, sizeof(double));
    enqueue("gemm", trace_cat::kCompute, 0, [=] { cpu::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void bf16_to_f32(const uint16_t* in, float* out, int64_t n) override {
    cpu::check_nonnegative("bf16_to_f32", n);
    check(in, count_bytes(n, 2), "bf16_to_f32", "in");
    check(out, count_bytes(n, 4), "bf16_to_f32", "out");
    enqueue("bf16_to_f32", trace_cat::kCompute, 0, [=] { cpu::bf16_to_f32(in, out, n); });
  }
  void gram_bf16_accumulate(const uint16_t* x, int64_t n, int64_t tokens, float* h, float beta) override {
    cpu::check_gram_args(n, tokens);
    check(x, matrix_bytes(tokens, n, n, 2), "gram_bf16_accumulate", "x_bf16");
    check(h, matrix_bytes(n, n, n, 4), "gram_bf16_accumulate", "h");
    enqueue("gram_bf16_accumulate", trace_cat::kCompute, 0, [=] { cpu::gram_bf16_accumulate(x, n, tokens, h, beta); });
  }

  bool cholesky_lower(double* a, int64_t n) override {
    cpu::check_nonnegative("cholesky_lower", n);
    check(a, matrix_bytes(n, n, n, 8), "cholesky_lower", "a");
    return run_for_answer("cholesky_lower", [=] { return cpu::cholesky_lower(a, n); });
  }
  void svd(double* a, int64_t m, int64_t n, double* s, double* u, double* vt) override {
    cpu::check_nonnegative("svd", m);
    cpu::check_nonnegative("svd", n);
    const int64_t r = std::min(m, n);
    check(a, count_bytes(m * n, 8), "svd", "a");
    check(s, count_bytes(r, 8), "svd", "s");
    check(u, count_bytes(m * r, 8), "svd", "u");
    check(vt, count_bytes(r * n, 8), "svd", "vt");
    run_for_answer("svd", [=] {
      cpu::svd(a, m, n, s, u, vt);
      return true;
    });
  }
  void invert_lower_triangular(double* l, int64_t n) override {
    cpu::check_nonnegative("invert_lower_triangular", n);
    check(l, matrix_bytes(n, n, n, 8), "invert_lower_triangular", "l");
    enqueue("invert_lower_triangular", trace_cat::kCompute, 0, [=] { cpu::invert_lower_triangular(l, n); });
  }
  bool inverse_upper_factor(float* h, int64_t n) override {
    cpu::check_nonnegative("inverse_upper_factor", n);
    check(h, matrix_bytes(n, n, n, 4), "inverse_upper_factor", "h");
    return run_for_answer("inverse_upper_factor_f32", [=] { return cpu::inverse_upper_factor(h, n); });
  }
  bool inverse_upper_factor(double* h, int64_t n) override {
    cpu::check_nonnegative("inverse_upper_factor", n);
    check(h, matrix_bytes(n, n, n, 8), "inverse_upper_factor", "h");
    return run_for_answer("inverse_upper_factor", [=] { return cpu::inverse_upper_factor(h, n); });
  }

  void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs,
                     bool inverse) override {
    cpu::check_hadamard_args(rows, n, m);
    check(x, matrix_bytes(rows, n, n, 4), "hadamard_rows", "x");
    check(hm, count_bytes(rows > 0 ? m * m : 0, 4), "hadamard_rows", "hm");
    if (signs) check(signs, count_bytes(rows > 0 ? n : 0, 4), "hadamard_rows", "signs");
    enqueue("hadamard_rows", trace_cat::kCompute, 0, [=] { cpu::hadamard_rows(x, rows, n, hm, m, signs, inverse); });
  }
  void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) override {
    cpu::check_nonnegative("rmsnorm", rows, dim);
    check(x, matrix_bytes(rows, dim, dim, 4), "rmsnorm", "x");
    check(w, count_bytes(rows > 0 ? dim : 0, 4), "rmsnorm", "w");
    check(y, matrix_bytes(rows, dim, dim, 4), "rmsnorm", "y");
    enqueue("rmsnorm", trace_cat::kCompute, 0, [=] { cpu::rmsnorm(x, w, y, rows, dim, eps); });
  }
  void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
            const RopeTable& table) override {
    cpu::check_rope_args(nseq, seqlen, nheads, head_dim, table);
    const int64_t tokens = nseq * seqlen;
    check(x, matrix_bytes(tokens, nheads * head_dim, nheads * head_dim, 4), "rope", "x");
    if (tokens > 0 && nheads > 0 && head_dim > 0) {
      // Positions 0..seqlen-1 are read (every sequence starts at 0).
      check(table.cos, matrix_bytes(seqlen, table.half_dim, table.half_dim, 4), "rope", "table.cos");
      check(table.sin, matrix_bytes(seqlen, table.half_dim, table.half_dim, 4), "rope", "table.sin");
    }
    enqueue("rope", trace_cat::kCompute, 0, [=] { cpu::rope(x, nseq, seqlen, nheads, head_dim, table); });
  }
  void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq, int64_t seqlen,
                 int64_t nheads, int64_t nkv, int64_t head_dim) override {
    cpu::check_attention_args(nseq, seqlen, nheads, nkv, head_dim);
    const int64_t tokens = nseq * seqlen;
    check(q, matrix_bytes(tokens, nheads * head_dim, nheads * head_dim, 4), "attention", "q");
    check(k, matrix_bytes(tokens, nkv * head_dim, nkv * head_dim, 4), "attention", "k");
    check(v, matrix_bytes(tokens, nkv * head_dim, nkv * head_dim, 4), "attention", "v");
    check(out, matrix_bytes(tokens, nheads * head_dim, nheads * head_dim, 4), "attention", "out");
    enqueue("attention", trace_cat::kCompute, 0, [=] { cpu::attention(q, k, v, out, nseq, seqlen, nheads, nkv, head_dim); });
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override {
    cpu::check_nonnegative("swiglu", n);
    check(gate, count_bytes(n, 4), "swiglu", "gate");
    check(up, count_bytes(n, 4), "swiglu", "up");
    check(out, count_bytes(n, 4), "swiglu", "out");
    enqueue("swiglu", trace_cat::kCompute, 0, [=] { cpu::swiglu(gate, up, out, n); });
  }
  void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t dim,
                        float eps) override {
    cpu::check_nonnegative("rmsnorm_backward", rows, dim);
    check(x, matrix_bytes(rows, dim, dim, 4), "rmsnorm_backward", "x");
    check(w, count_bytes(rows > 0 ? dim : 0, 4), "rmsnorm_backward", "w");
    check(dy, matrix_bytes(rows, dim, dim, 4), "rmsnorm_backward", "dy");
    check(dx, matrix_bytes(rows, dim, dim, 4), "rmsnorm_backward", "dx");
    enqueue("rmsnorm_backward", trace_cat::kCompute, 0,
            [=] { cpu::rmsnorm_backward(x, w, dy, dx, rows, dim, eps); });
  }
  void rope_backward(float* d, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                     const RopeTable& table) override {
    cpu::check_rope_args(nseq, seqlen, nheads, head_dim, table);
    const int64_t tokens = nseq * seqlen;
    check(d, matrix_bytes(tokens, nheads * head_dim, nheads * head_dim, 4), "rope_backward", "d");
    if (tokens > 0 && nheads > 0 && head_dim > 0) {
      check(table.cos, matrix_bytes(seqlen, table.half_dim, table.half_dim, 4), "rope_backward", "table.cos");
      check(table.sin, matrix_bytes(seqlen, table.half_dim, table.half_dim, 4), "rope_backward", "table.sin");
    }
    enqueue("rope_backward", trace_cat::kCompute, 0,
            [=] { cpu::rope_backward(d, nseq, seqlen, nheads, head_dim, table); });
  }
  void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq, float* dk,
                          float* dv, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                          int64_t head_dim) override {
    cpu::check_attention_args(nseq, seqlen, nheads, nkv, head_dim);
    const int64_t tokens = nseq * seqlen;
    const int64_t qw = nheads * head_dim, kw = nkv * head_dim;
    check(q, matrix_bytes(tokens, qw, qw, 4), "attention_backward", "q");
    check(k, matrix_bytes(tokens, kw, kw, 4), "attention_backward", "k");
    check(v, matrix_bytes(tokens, kw, kw, 4), "attention_backward", "v");
    check(dout, matrix_bytes(tokens, qw, qw, 4), "attention_backward", "dout");
    check(dq, matrix_bytes(tokens, qw, qw, 4), "attention_backward", "dq");
    check(dk, matrix_bytes(tokens, kw, kw, 4), "attention_backward", "dk");
    check(dv, matrix_bytes(tokens, kw, kw, 4), "attention_backward", "dv");
    enqueue("attention_backward", trace_cat::kCompute, 0, [=] {
      cpu::attention_backward(q, k, v, dout, dq, dk, dv, nseq, seqlen, nheads, nkv, head_dim);
    });
  }
  void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                       int64_t n) override {
    cpu::check_nonnegative("swiglu_backward", n);
    check(gate, count_bytes(n, 4), "swiglu_backward", "gate");
    check(up, count_bytes(n, 4), "swiglu_backward", "up");
    check(dout, count_bytes(n, 4), "swiglu_backward", "dout");
    check(dgate, count_bytes(n, 4), "swiglu_backward", "dgate");
    check(dup, count_bytes(n, 4), "swiglu_backward", "dup");
    enqueue("swiglu_backward", trace_cat::kCompute, 0, [=] { cpu::swiglu_backward(gate, up, dout, dgate, dup, n); });
  }
  void subtract(const float* a, const float* b, float* out, int64_t n) override {
    cpu::check_nonnegative("subtract", n);
    check(a, count_bytes(n, 4), "subtract", "a");
    check(b, count_bytes(n, 4), "subtract", "b");
    check(out, count_bytes(n, 4), "subtract", "out");
    enqueue("subtract", trace_cat::kCompute, 0, [=] { cpu::subtract(a, b, out, n); });
  }
  void add_inplace(float* y, const float* x, int64_t n) override {
    cpu::check_nonnegative("add_inplace", n);
    check(y, count_bytes(n, 4), "add_inplace", "y");
    check(x, count_bytes(n, 4), "add_inplace", "x");
    enqueue("add_inplace", trace_cat::kCompute, 0, [=] { cpu::add_inplace(y, x, n); });
  }
  void fake_quant_ste(const float* w, int64_t rows, int64_t cols, int64_t group, const double* params,
                      int32_t maxq, bool free_min, float* wq, uint8_t* mask) override {
    cpu::check_fake_quant_ste_args(rows, cols, group, maxq);
    const int64_t groups = cols > 0 ? (cols + group - 1) / group : 0;
    check(w, matrix_bytes(rows, cols, cols, 4), "fake_quant_ste", "w");
    check(params, count_bytes(rows * groups * 2, 8), "fake_quant_ste", "params");
    check(wq, matrix_bytes(rows, cols, cols, 4), "fake_quant_ste", "wq");
    check(mask, matrix_bytes(rows, cols, cols, 1), "fake_quant_ste", "mask");
    enqueue("fake_quant_ste", trace_cat::kCompute, 0,
            [=] { cpu::fake_quant_ste(w, rows, cols, group, params, maxq, free_min, wq, mask); });
  }
  void ste_mask_grad(const uint8_t* mask, float* g, int64_t n) override {
    cpu::check_nonnegative("ste_mask_grad", n);
    check(mask, count_bytes(n, 1), "ste_mask_grad", "mask");
    check(g, count_bytes(n, 4), "ste_mask_grad", "g");
    enqueue("ste_mask_grad", trace_cat::kCompute, 0, [=] { cpu::ste_mask_grad(mask, g, n); });
  }
  void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                          int64_t band, float* ud) override {
    cpu::check_sde_band_args("sde_banded_product", rows, rank, band);
    check(u, matrix_bytes(rows, rank, rank, 4), "sde_banded_product", "u");
    check(s, count_bytes(rank, 4), "sde_banded_product", "s");
    check(params, count_bytes((2 * band + 1) * rank, 4), "sde_banded_product", "params");
    check(ud, matrix_bytes(rows, rank, rank, 4), "sde_banded_product", "ud");
    enqueue("sde_banded_product", trace_cat::kCompute, 0,
            [=] { cpu::sde_banded_product(u, s, params, rows, rank, band, ud); });
  }
  void sde_band_grad(const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band,
                     float* dparams) override {
    cpu::check_nonnegative("sde_band_grad", cols);
    cpu::check_sde_band_args("sde_band_grad", 0, rank, band);
    check(m, matrix_bytes(rank, cols, cols, 4), "sde_band_grad", "m");
    check(vt, matrix_bytes(rank, cols, cols, 4), "sde_band_grad", "vt");
    check(dparams, count_bytes((2 * band + 1) * rank, 4), "sde_band_grad", "dparams");
    enqueue("sde_band_grad", trace_cat::kCompute, 0, [=] { cpu::sde_band_grad(m, vt, rank, cols, band, dparams); });
  }
  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    cpu::check_nonnegative("add_bias", rows, cols);
    check(y, matrix_bytes(rows, cols, cols, 4), "add_bias", "y");
    check(bias, count_bytes(rows > 0 ? cols : 0, 4), "add_bias", "bias");
    enqueue("add_bias", trace_cat::kCompute, 0, [=] { cpu::add_bias(y, bias, rows, cols); });
  }

  void gptq_sweep(const SweepProblem& p, const SweepOutput& out, SweepPrecision precision) override {
    validate_sweep_problem(p, out, "emulated device: gptq_sweep", false);
    const uint64_t mn = matrix_bytes(p.m, p.n, p.n, 1), nn = matrix_bytes(p.n, p.n, p.n, 1);
    const char* op = "gptq_sweep";
    check(p.w, mn * 4, op, "w");
    check(p.u, nn * 4, op, "u");
    if (p.p1) check(p.p1, nn * 4, op, "p1");
    if (p.p2) check(p.p2, nn * 4, op, "p2");
    check(p.perm, count_bytes(p.n, 4), op, "perm");
    if (p.dead) check(p.dead, count_bytes(p.n, 1), op, "dead");
    check(out.codes, mn, op, "codes");
    check(out.q, mn * 4, op, "q");
    check(out.scales, count_bytes(p.ngroups() * p.m, 4), op, "scales");
    check(out.zeros, count_bytes(p.ngroups() * p.m, 4), op, "zeros");
    enqueue(precision == SweepPrecision::F32 ? "gptq_sweep32" : "gptq_sweep64", trace_cat::kQuantize, 0, [=] {
      if (precision == SweepPrecision::F32)
        cpu_gptq_sweep32(p, out);
      else
        cpu_gptq_sweep64(p, out);
    });
  }

 private:
  template <typename T>
  void check_gemm(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                  const T* b, int64_t ldb, const T* c, int64_t ldc, uint64_t elem) {
    if (m <= 0 || n <= 0) return;  // nothing written, nothing read
    if (k > 0) {
      check(a, ta == Trans::N ? matrix_bytes(m, k, lda, elem) : matrix_bytes(k, m, lda, elem), op, "a");
      check(b, tb == Trans::N ? matrix_bytes(k, n, ldb, elem) : matrix_bytes(n, k, ldb, elem), op, "b");
    }
    check(c, matrix_bytes(m, n, ldc, elem), op, "c");
  }


  // Waits until everything queued on every stream has run (or been skipped
  // after an error).
  void drain() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] {
      for (const Queue& q : queues_)
        if (!q.items.empty() || q.busy) return false;
      return true;
    });
  }
  // The first error, once (mu_ held).
  void rethrow_error_locked() {
    if (!error_) return;
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }

  // ---- stream order. A Clock holds, per stream, the last work item (its
  // seq) that something is known to run after: known_[s] for the work queued
  // on s from now on (raised by wait() and by what the host has seen pass),
  // an event's for everything up to it, host_known_ for the host.
  using Clock = std::array<uint64_t, kStreams>;
  static const char* stream_name(int s) {
    static const char* const names[kStreams] = {"compute", "upload", "download"};
    return names[s];
  }
  // Work queued on s from now on comes after whatever the host has seen pass.
  void fold_host_knowledge_locked(int s) {
    for (int i = 0; i < kStreams; ++i) known_[s][i] = std::max(known_[s][i], host_known_[i]);
  }
  const Clock& clock_of_locked(const Event& e) const {
    auto it = event_clocks_.find({static_cast<int>(e.stream), e.seq});
    if (it == event_clocks_.end())
      throw InternalError("emulated device: wait for an event (" + std::string(stream_name(static_cast<int>(e.stream))) +
                          " stream, item " + std::to_string(e.seq) + ") this device did not record");
    return it->second;
  }

  // The buffers an op's arguments lie in, noted by check() on the calling
  // thread between the op's checks and its enqueue().
  struct Touch {
    uint64_t block = 0;
    const char* arg = "";
  };
  static std::vector<Touch>& touched() {
    thread_local std::vector<Touch> t;
    return t;
  }
  void check(const void* ptr, uint64_t bytes, const char* op, const char* arg) {
    if (bytes == 0) return;
    try {
      device_.check(ptr, bytes, op, arg);
    } catch (...) {
      touched().clear();
      throw;
    }
    touched().push_back({device_.block_id(ptr), arg});
  }
  void forget(void* ptr) {
    const uint64_t id = device_.block_id(ptr);
    std::lock_guard<std::mutex> lock(mu_);
    last_use_.erase(id);
  }

  // ---- pinned host memory: the blocks alloc_pinned handed out, by start.
  void* pin(uint64_t bytes) {
    constexpr uint64_t kAlign = 64;
    void* p = std::aligned_alloc(kAlign, static_cast<size_t>((bytes + kAlign - 1) / kAlign * kAlign));
    if (p) {
      std::lock_guard<std::mutex> lock(pinned_mu_);
      pinned_blocks_[reinterpret_cast<uintptr_t>(p)] = bytes;
    }
    return p;
  }
  // As cudaFreeHost: queued copies that may still use the block finish first.
  void unpin(void* p) {
    drain();
    {
      std::lock_guard<std::mutex> lock(pinned_mu_);
      pinned_blocks_.erase(reinterpret_cast<uintptr_t>(p));
    }
    std::free(p);
  }
  // Whether [p, p + bytes) lies inside one pinned block.
  bool pinned(const void* p, uint64_t bytes) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> lock(pinned_mu_);
    auto it = pinned_blocks_.upper_bound(a);
    if (it == pinned_blocks_.begin()) return false;
    --it;
    return a - it->first <= it->second && bytes <= it->second - (a - it->first);
  }

  // Sleeps so `bytes` take as long as the stated bandwidth would give them.
  void throttle(uint64_t bytes) const {
    if (pcie_gbps_ <= 0) return;
    std::this_thread::sleep_for(std::chrono::duration<double>(static_cast<double>(bytes) / (pcie_gbps_ * 1e9)));
  }

  // One queued item: what it is for the trace, and the work (or, for a
  // wait() on another stream, the event it waits for).
  struct Work {
    const char* name;
    const char* category;
    uint64_t bytes;
    std::function<void()> run;
    uint64_t seq = 0;  // its place in its stream
    Event wait_for{};
  };
  struct Queue {
    std::deque<Work> items;
    bool busy = false;
    uint64_t queued = 0, done = 0;  // seq of the last item queued, and of the last finished
    std::thread worker;
  };

  // Queues work on stream s after checking, for every buffer its arguments
  // lie in (check() noted them), that any other stream's use of the buffer
  // is ordered before it by an event.
  void enqueue(Stream s, const char* name, const char* category, uint64_t bytes, std::function<void()> work) {
    std::vector<Touch> uses;
    uses.swap(touched());
    {
      std::lock_guard<std::mutex> lock(mu_);
      const int si = static_cast<int>(s);
      fold_host_knowledge_locked(si);
      Queue& q = queues_[si];
      const uint64_t seq = q.queued + 1;
      for (const Touch& u : uses) {
        auto it = last_use_.find(u.block);
        if (it == last_use_.end()) continue;
        for (int t = 0; t < kStreams; ++t) {
          if (t == si || it->second[t] <= known_[si][t]) continue;
          throw InternalError(std::string("emulated device: ") + name + " on the " + stream_name(si) +
                              " stream: argument " + u.arg + " lies in " + device_.block_name(u.block) +
                              ", which work queued on the " + stream_name(t) +
                              " stream also uses, with no event between them: record() an event after the one "
                              "and wait() for it before queueing the other");
        }
      }
      for (const Touch& u : uses) last_use_[u.block][si] = seq;
      q.queued = seq;
      q.items.push_back({name, category, bytes, std::move(work), seq, {}});
    }
    cv_.notify_all();
  }
  void enqueue(const char* name, const char* category, uint64_t bytes, std::function<void()> work) {
    enqueue(Stream::Compute, name, category, bytes, std::move(work));
  }
  // Blocks until everything queued on s so far has run (or been skipped
  // after an error, which is rethrown here, once), without the host learning
  // the stream order that wait_host() would teach it.
  void wait_queued(Stream s) {
    std::unique_lock<std::mutex> lock(mu_);
    const int si = static_cast<int>(s);
    const uint64_t seq = queues_[si].queued;
    cv_.wait(lock, [&] { return queues_[si].done >= seq; });
    rethrow_error_locked();
  }
  // Ops whose result the host needs now (did the factorization succeed?).
  bool run_for_answer(const char* name, std::function<bool()> work) {
    bool answer = false;
    enqueue(name, trace_cat::kCompute, 0, [&answer, work = std::move(work)] { answer = work(); });
    synchronize();
    return answer;
  }

  void run_queue(int index) {
    Queue& q = queues_[index];
    const std::string lane = std::string("device (emulated, ") + stream_name(index) + " stream)";
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || (!paused_ && !q.items.empty()); });
      if (q.items.empty()) return;  // stop_ with nothing left
      Work work = std::move(q.items.front());
      q.items.pop_front();
      q.busy = true;
      if (!work.run) {
        // A wait for another stream's event: that stream always gets there
        // (its items run, or are skipped after an error, and count as done).
        const int t = static_cast<int>(work.wait_for.stream);
        cv_.wait(lock, [&] { return queues_[t].done >= work.wait_for.seq; });
      } else {
        const bool skip = error_ != nullptr;  // after an error nothing more runs until it is reported
        TraceRecorder* trace = trace_;
        lock.unlock();
        std::exception_ptr failed;
        if (!skip) {
          const double t0 = trace ? trace->now_us() : 0;
          try {
            work.run();
          } catch (...) {
            failed = std::current_exception();
          }
          if (trace) {
            nlohmann::json args = nlohmann::json::object();
            if (work.bytes > 0) args["bytes"] = work.bytes;
            trace->complete(work.name, work.category, t0, trace->now_us() - t0, trace->lane(lane), std::move(args));
          }
        }
        lock.lock();
        if (failed && !error_) error_ = failed;
      }
      q.done = work.seq;
      q.busy = false;
      cv_.notify_all();
    }
  }

  EmulatedDeviceMemory device_;
  MemoryLedger memory_;
  mutable std::mutex pinned_mu_;
  std::map<uintptr_t, uint64_t> pinned_blocks_;  // pinned host block start -> bytes
  MemoryLedger pinned_memory_;
  const double pcie_gbps_;
  std::mutex mu_;
  std::condition_variable cv_;  // any queue changed (items, done, busy) or pause/stop
  Queue queues_[kStreams];
  Clock known_[kStreams] = {};
  Clock host_known_ = {};
  std::map<std::pair<int, uint64_t>, Clock> event_clocks_;  // recorded events (stream, seq)
  std::map<uint64_t, Clock> last_use_;  // live buffer (allocation number) -> last item of each stream using it
  using HostRange = std::pair<uintptr_t, uintptr_t>;  // [first, second)
  std::multiset<HostRange> pending_sources_;  // host bytes queued uploads have yet to read
  TraceRecorder* trace_ = nullptr;  // guarded by mu_
  bool stop_ = false, paused_ = false;
  std::exception_ptr error_;
};

}  // namespace

void emulated_set_paused(Backend& be, bool paused) {
  auto* emu = dynamic_cast<EmulatedBackend*>(&be);
  if (!emu) throw InternalError("emulated_set_paused: backend '" + be.name() + "' is not the emulated device");
  emu->set_paused(paused);
}

std::unique_ptr<Backend> make_emulated_backend(const EmulatedBackendOptions& options) {
  return std::make_unique<EmulatedBackend>(options);
}

}  // namespace streamq
