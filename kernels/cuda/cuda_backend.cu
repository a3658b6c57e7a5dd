// The CUDA Backend: owns a stream, a cuBLAS and a cuSOLVER handle bound to it,
// and their workspaces from the pool; each op forwards to its launcher in the
// kernels/cuda file of its family (gemm, linalg, rmsnorm, rope, attention,
// elementwise, gptq_sweep); buffers and copies go through the pool and the stream.
// With a trace set, each op and copy is timed by CUDA events on the stream's
// lane (kernels/cuda/stream_trace.h).
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <deque>
#include <mutex>
#include <string>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_raii.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/ste.cuh"
#include "kernels/cuda/sde_band.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/gptq_sweep.cuh"
#include "kernels/cuda/hadamard.cuh"
#include "kernels/cuda/linalg.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/stream_trace.h"
#include "scheduler/trace_categories.h"

namespace streamq {
namespace {

// cuBLAS's recommended workspace on Hopper. Given explicitly so it comes from
// the pool, and so results stay deterministic (cuBLAS documents its
// bitwise reproducibility for a handle with a fixed workspace and stream).
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

class CudaBackendImpl final : public CudaBackend {
 public:
  explicit CudaBackendImpl(DevicePool& pool)
      : pool_(pool),
        cublas_workspace_(pool.allocate<unsigned char>(kCublasWorkspaceBytes,
                                                       "cuBLAS workspace of the CUDA backend")),
        cublas_(stream_.get()),
        cusolver_(stream_.get()),
        solver_workspace_(pool),
        timeline_(stream_.get(), "device (cuda, compute stream)"),
        upload_timeline_(upload_stream_.get(), "device (cuda, upload stream)"),
        download_timeline_(download_stream_.get(), "device (cuda, download stream)"),
        // Page-locked host memory: the copy engines read and write it
        // directly, so copies from and to it are truly asynchronous (pageable
        // ones are staged by the driver and block the caller). Unlimited
        // here: host memory is budgeted by the pipeline's memory plan.
        pinned_(UINT64_MAX, [](uint64_t bytes, const std::string&) -> void* {
                  void* p = nullptr;
                  // No room is nullptr (the ledger names it); clear the sticky error.
                  if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
                    cudaGetLastError();
                    return nullptr;
                  }
                  return p;
                },
                // cudaFreeHost synchronizes the device first, as cudaFree does.
                [](void* p) { cudaFreeHost(p); }, "--host-mem-limit", "CUDA pinned host memory") {
    CUBLAS_CHECK(cublasSetWorkspace(cublas_.get(), cublas_workspace_.get(),
                                    cublas_workspace_.bytes()));
    // Plain fp32 math: TF32 tensor cores would cost the float GEMM ~10 bits
    // and the agreement with the CPU backend.
    CUBLAS_CHECK(cublasSetMathMode(cublas_.get(), CUBLAS_DEFAULT_MATH));
  }

  ~CudaBackendImpl() override {
    // Queued work may still use the workspaces freed after this; errors
    // cannot be thrown here and will resurface at the next checked call.
    for (cudaStream_t s : {stream_.get(), upload_stream_.get(), download_stream_.get()})
      if (cudaStreamSynchronize(s) != cudaSuccess) cudaGetLastError();
    for (auto& events : events_)
      for (auto& [seq, ev] : events) cudaEventDestroy(ev);
  }

  std::string name() const override { return "cuda"; }
  cudaStream_t stream() const override { return stream_.get(); }
  void synchronize() override {
    uint64_t recorded[kStreams];
    {
      std::lock_guard<std::mutex> lock(events_mu_);
      std::copy(recorded_, recorded_ + kStreams, recorded);
    }
    CUDA_CHECK(cudaStreamSynchronize(upload_stream_.get()));
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    CUDA_CHECK(cudaStreamSynchronize(download_stream_.get()));
    timeline_.drain();
    upload_timeline_.drain();
    download_timeline_.drain();
    std::lock_guard<std::mutex> lock(events_mu_);
    for (int t = 0; t < kStreams; ++t) {
      // Passed at the previous synchronize: no wait queued since refers to
      // them, and the waits queued before have run (the streams just drained).
      auto& events = events_[t];
      while (!events.empty() && events.front().first <= passed_[t]) {
        CUDA_CHECK(cudaEventDestroy(events.front().second));
        events.pop_front();
      }
      passed_[t] = recorded[t];
    }
  }
  void set_trace(TraceRecorder* trace) override {
    synchronize();
    timeline_.start(trace);
    upload_timeline_.start(trace);
    download_timeline_.start(trace);
  }

  // Events: a fresh cudaEvent per record(), never re-recorded. One that has
  // passed (everything recorded before a synchronize() began) is no longer
  // waited for, and is destroyed at the synchronize() after that: the CPU
  // runtime's stream waits read their event when they run, not when queued,
  // so an event must outlive the waits queued on it. Callers on several
  // threads (a chunk pass's copy and compute tasks) share the lists: a lock.
  Event record(Stream s) override {
    const int si = static_cast<int>(s);
    std::lock_guard<std::mutex> lock(events_mu_);
    cudaEvent_t ev = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    const cudaError_t rc = cudaEventRecord(ev, stream_of(s));
    if (rc != cudaSuccess) {
      cudaEventDestroy(ev);
      CUDA_CHECK(rc);
    }
    events_[si].emplace_back(++recorded_[si], ev);
    return Event{s, recorded_[si]};
  }
  void wait(Stream s, const Event& e) override {
    if (e.stream == s) return;  // stream order
    cudaEvent_t ev = nullptr;
    {
      std::lock_guard<std::mutex> lock(events_mu_);
      ev = live_event_locked(e);
    }
    // Outside the lock: on the CPU runtime this wait blocks the host (its
    // shim), and record() on other threads must go on meanwhile. The event
    // outlives it as in wait_host.
    if (ev != nullptr) CUDA_CHECK(cudaStreamWaitEvent(stream_of(s), ev, 0));
  }
  void wait_host(const Event& e) override {
    cudaEvent_t ev = nullptr;
    {
      std::lock_guard<std::mutex> lock(events_mu_);
      ev = live_event_locked(e);
    }
    // Not passed when looked up, so destroyed two synchronize() calls later
    // at the earliest: another thread's, while this one waits, would be one.
    if (ev != nullptr) CUDA_CHECK(cudaEventSynchronize(ev));
  }

  // No float64 sweep on the GPU: the float32 sweep is held to the CPU's.
  bool supports(Op op) const override { return op != Op::GptqSweep64; }
  MemoryLedger& memory() override { return pool_.ledger(); }
  bool host_addressable() const override { return false; }
  MemoryLedger& pinned_memory() override { return pinned_; }
  // Asynchronous on the stream for pinned host memory (alloc_pinned); with
  // pageable memory the driver stages an upload before returning and
  // completes a download before returning.
  void copy_from_host(void* dst, const void* host_src, uint64_t bytes) override {
    copy_from_host_on(Stream::Compute, dst, host_src, bytes);
  }
  void copy_to_host(void* host_dst, const void* src, uint64_t bytes) override {
    copy_to_host_on(Stream::Compute, host_dst, src, bytes);
  }
  void copy_from_host_on(Stream s, void* dst, const void* host_src, uint64_t bytes) override {
    if (bytes > 0)
      timeline_of(s).around("copy_from_host", trace_cat::kH2D, bytes, [&] {
        CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_of(s)));
      });
  }
  void copy_to_host_on(Stream s, void* host_dst, const void* src, uint64_t bytes) override {
    if (bytes > 0)
      timeline_of(s).around("copy_to_host", trace_cat::kD2H, bytes, [&] {
        CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_of(s)));
      });
  }
  void copy_within(void* dst, const void* src, uint64_t bytes) override {
    if (bytes > 0)
      timeline_.around("copy_within", trace_cat::kCompute, bytes, [&] {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
      });
  }
  void fill_bytes(void* dst, unsigned char value, uint64_t bytes) override {
    if (bytes > 0)
      timeline_.around("fill_bytes", trace_cat::kCompute, bytes,
                       [&] { CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, stream_.get())); });
  }
  void gptq_sweep(const SweepProblem& p, const SweepOutput& out, SweepPrecision precision) override {
    check_supported(precision == SweepPrecision::F32 ? Op::GptqSweep32 : Op::GptqSweep64);
    timeline_.around("gptq_sweep32", trace_cat::kQuantize, 0,
                     [&] { cuda_gptq_sweep_device(stream_.get(), cublas_.get(), p, out); });
  }

  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c,
            int64_t ldc) override {
    timeline_.around("gemm", trace_cat::kCompute, 0, [&] { cuda_gemm(cublas_.get(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
            int64_t lda, const double* b, int64_t ldb, double beta, double* c,
            int64_t ldc) override {
    timeline_.around("gemm", trace_cat::kCompute, 0, [&] { cuda_gemm(cublas_.get(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
  }
  void bf16_to_f32(const uint16_t* in, float* out, int64_t n) override {
    timeline_.around("bf16_to_f32", trace_cat::kCompute, 0, [&] { cuda_bf16_to_f32(stream_.get(), in, out, n); });
  }
  void gram_bf16_accumulate(const uint16_t* x_bf16, int64_t n, int64_t tokens, float* h,
                            float beta) override {
    timeline_.around("gram_bf16_accumulate", trace_cat::kCompute, 0, [&] { cuda_gram_bf16_accumulate(cublas_.get(), x_bf16, n, tokens, h, beta); });
  }

  bool cholesky_lower(double* a, int64_t n) override {
    bool ok = false;
    timeline_.around("cholesky_lower", trace_cat::kCompute, 0, [&] { ok = cuda_cholesky_lower(cusolver_.get(), solver_workspace_, a, n); });
    return ok;
  }
  void svd(double* a, int64_t m, int64_t n, double* s, double* u, double* vt) override {
    timeline_.around("svd", trace_cat::kCompute, 0,
                     [&] { cuda_svd(cusolver_.get(), solver_workspace_, a, m, n, s, u, vt); });
  }
  void invert_lower_triangular(double* l, int64_t n) override {
    timeline_.around("invert_lower_triangular", trace_cat::kCompute, 0, [&] { cuda_invert_lower_triangular(cusolver_.get(), solver_workspace_, l, n); });
  }
  bool inverse_upper_factor(float* h, int64_t n) override {
    bool ok = false;
    timeline_.around("inverse_upper_factor_f32", trace_cat::kCompute, 0,
                     [&] { ok = cuda_inverse_upper_factor(cusolver_.get(), solver_workspace_, h, n); });
    return ok;
  }
  bool inverse_upper_factor(double* h, int64_t n) override {
    bool ok = false;
    timeline_.around("inverse_upper_factor", trace_cat::kCompute, 0, [&] { ok = cuda_inverse_upper_factor(cusolver_.get(), solver_workspace_, h, n); });
    return ok;
  }

  void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs,
                     bool inverse) override {
    timeline_.around("hadamard_rows", trace_cat::kCompute, 0,
                     [&] { cuda_hadamard_rows(stream_.get(), x, rows, n, hm, m, signs, inverse); });
  }
  void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
               float eps) override {
    timeline_.around("rmsnorm", trace_cat::kCompute, 0, [&] { cuda_rmsnorm(stream_.get(), x, w, y, rows, dim, eps); });
  }
  void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
            const RopeTable& table) override {
    timeline_.around("rope", trace_cat::kCompute, 0, [&] { cuda_rope(stream_.get(), x, nseq, seqlen, nheads, head_dim, table); });
  }
  void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq,
                 int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) override {
    timeline_.around("attention", trace_cat::kCompute, 0, [&] { cuda_attention(stream_.get(), q, k, v, out, nseq, seqlen, nheads, nkv, head_dim); });
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override {
    timeline_.around("swiglu", trace_cat::kCompute, 0, [&] { cuda_swiglu(stream_.get(), gate, up, out, n); });
  }
  void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t dim,
                        float eps) override {
    timeline_.around("rmsnorm_backward", trace_cat::kCompute, 0,
                     [&] { cuda_rmsnorm_backward(stream_.get(), x, w, dy, dx, rows, dim, eps); });
  }
  void rope_backward(float* d, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                     const RopeTable& table) override {
    timeline_.around("rope_backward", trace_cat::kCompute, 0,
                     [&] { cuda_rope_backward(stream_.get(), d, nseq, seqlen, nheads, head_dim, table); });
  }
  // The row statistics live in the solver workspace (same stream, so never
  // in use by a queued solver call); it grows to the largest call's need.
  void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq, float* dk,
                          float* dv, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                          int64_t head_dim) override {
    timeline_.around("attention_backward", trace_cat::kCompute, 0, [&] {
      const bool sizes_ok = nseq >= 0 && seqlen >= 0 && nheads >= 0;  // the launcher names any other error
      void* stats = sizes_ok ? solver_workspace_.device(cuda_attention_backward_workspace_bytes(nseq, seqlen, nheads),
                                                        stream_.get(), "attention_backward row statistics")
                             : nullptr;
      cuda_attention_backward(stream_.get(), q, k, v, dout, dq, dk, dv, stats, nseq, seqlen, nheads, nkv,
                              head_dim);
    });
  }
  void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                       int64_t n) override {
    timeline_.around("swiglu_backward", trace_cat::kCompute, 0,
                     [&] { cuda_swiglu_backward(stream_.get(), gate, up, dout, dgate, dup, n); });
  }
  void subtract(const float* a, const float* b, float* out, int64_t n) override {
    timeline_.around("subtract", trace_cat::kCompute, 0, [&] { cuda_subtract(stream_.get(), a, b, out, n); });
  }
  void add_inplace(float* y, const float* x, int64_t n) override {
    timeline_.around("add_inplace", trace_cat::kCompute, 0, [&] { cuda_add_inplace(stream_.get(), y, x, n); });
  }
  void fake_quant_ste(const float* w, int64_t rows, int64_t cols, int64_t group, const double* params,
                      int32_t maxq, bool free_min, float* wq, uint8_t* mask) override {
    timeline_.around("fake_quant_ste", trace_cat::kCompute, 0, [&] {
      cuda_fake_quant_ste(stream_.get(), w, rows, cols, group, params, maxq, free_min, wq, mask);
    });
  }
  void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                          int64_t band, float* ud) override {
    timeline_.around("sde_banded_product", trace_cat::kCompute, 0,
                     [&] { cuda_sde_banded_product(stream_.get(), u, s, params, rows, rank, band, ud); });
  }
  void sde_band_grad(const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band,
                     float* dparams) override {
    timeline_.around("sde_band_grad", trace_cat::kCompute, 0,
                     [&] { cuda_sde_band_grad(stream_.get(), m, vt, rank, cols, band, dparams); });
  }
  void ste_mask_grad(const uint8_t* mask, float* g, int64_t n) override {
    timeline_.around("ste_mask_grad", trace_cat::kCompute, 0, [&] { cuda_ste_mask_grad(stream_.get(), mask, g, n); });
  }
  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    timeline_.around("add_bias", trace_cat::kCompute, 0, [&] { cuda_add_bias(stream_.get(), y, bias, rows, cols); });
  }

 private:
  cudaStream_t stream_of(Stream s) const {
    return s == Stream::Upload ? upload_stream_.get() : s == Stream::Download ? download_stream_.get() : stream_.get();
  }
  StreamTrace& timeline_of(Stream s) {
    return s == Stream::Upload ? upload_timeline_ : s == Stream::Download ? download_timeline_ : timeline_;
  }
  // The event of e when it may not have passed yet; null when it has (at a
  // synchronize()) or marks nothing. events_mu_ held.
  cudaEvent_t live_event_locked(const Event& e) const {
    const int t = static_cast<int>(e.stream);
    if (e.seq <= passed_[t]) return nullptr;
    for (const auto& [seq, ev] : events_[t])
      if (seq == e.seq) return ev;
    throw InternalError("cuda backend: wait for an event it did not record");
  }

  // Declaration order is destruction order reversed: the handles go before
  // the workspace they point at, and everything before the streams.
  DevicePool& pool_;
  CudaStream stream_, upload_stream_, download_stream_;
  PoolBuffer<unsigned char> cublas_workspace_;
  CublasHandle cublas_;
  CusolverHandle cusolver_;
  SolverWorkspace solver_workspace_;
  StreamTrace timeline_;
  StreamTrace upload_timeline_, download_timeline_;
  MemoryLedger pinned_;
  std::mutex events_mu_;
  std::deque<std::pair<uint64_t, cudaEvent_t>> events_[kStreams];  // recorded, not destroyed yet, by seq
  uint64_t recorded_[kStreams] = {}, passed_[kStreams] = {};
};

}  // namespace

std::unique_ptr<CudaBackend> make_cuda_backend(DevicePool& pool) {
  return std::make_unique<CudaBackendImpl>(pool);
}

}  // namespace streamq
