// The emulated device: pointer checks on the calling thread when work is
// queued, the work itself (CPU kernels, copies) on the device's thread in
// queue order, the first error kept and rethrown by synchronize().
#include "kernels/emulated/emulated_backend.h"

#include <xxhash.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
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
        memory_(o.memory_bytes, [this](uint64_t bytes) { return device_.allocate(bytes); },
                // As cudaFree: queued work that may still use the block finishes first.
                [this](void* p) {
                  drain();
                  device_.free(p);
                },
                "--gpu-mem-limit", "emulated device memory"),
        pcie_gbps_(o.pcie_gbps) {
    if (o.memory_bytes == 0) throw InputError("--device emulated needs --gpu-mem-limit (the emulated device's memory)");
    openblas_set_num_threads(1);  // as the CPU backend: parallelism from oneTBB only
    worker_ = std::thread([this] { run_queue(); });
  }
  ~EmulatedBackend() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      paused_ = false;
    }
    cv_.notify_all();
    worker_.join();
  }

  std::string name() const override { return "emulated"; }
  bool supports(Op) const override { return true; }
  MemoryLedger& memory() override { return memory_; }
  bool host_addressable() const override { return false; }

  void copy_from_host(void* dst, const void* host_src, uint64_t bytes) override {
    device_.check(dst, bytes, "copy_from_host", "dst");
    if (bytes == 0) return;
    if (device_.in_address_space(host_src)) {
      throw InternalError("emulated device: copy_from_host: argument host_src is device memory; use copy_within");
    }
    const uint64_t hash = XXH3_64bits(host_src, bytes);
    enqueue("copy_from_host", trace_cat::kH2D, bytes, [=, this] {
      if (XXH3_64bits(host_src, bytes) != hash) {
        throw InternalError("emulated device: copy_from_host of " + std::to_string(bytes) +
                            " bytes: the host source changed between queueing the copy and the copy; keep it "
                            "unchanged until synchronize()");
      }
      std::memcpy(dst, host_src, bytes);
      throttle(bytes);
    });
  }
  void copy_to_host(void* host_dst, const void* src, uint64_t bytes) override {
    device_.check(src, bytes, "copy_to_host", "src");
    if (bytes == 0) return;
    if (device_.in_address_space(host_dst)) {
      throw InternalError("emulated device: copy_to_host: argument host_dst is device memory; use copy_within");
    }
    // What a premature host read sees: NaN for floats, 0xFF bytes otherwise.
    std::memset(host_dst, 0xFF, bytes);
    enqueue("copy_to_host", trace_cat::kD2H, bytes, [=, this] {
      std::memcpy(host_dst, src, bytes);
      throttle(bytes);
    });
  }
  void copy_within(void* dst, const void* src, uint64_t bytes) override {
    device_.check(dst, bytes, "copy_within", "dst");
    device_.check(src, bytes, "copy_within", "src");
    if (bytes > 0) enqueue("copy_within", "d2d", bytes, [=] { std::memmove(dst, src, bytes); });
  }
  void fill_bytes(void* dst, unsigned char value, uint64_t bytes) override {
    device_.check(dst, bytes, "fill_bytes", "dst");
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
    if (!error_) return;
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
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
  void gram_bf16_accumulate(const uint16_t* x, int64_t n, int64_t tokens, float* h, float beta) override {
    cpu::check_gram_args(n, tokens);
    device_.check(x, matrix_bytes(tokens, n, n, 2), "gram_bf16_accumulate", "x_bf16");
    device_.check(h, matrix_bytes(n, n, n, 4), "gram_bf16_accumulate", "h");
    enqueue("gram_bf16_accumulate", trace_cat::kCompute, 0, [=] { cpu::gram_bf16_accumulate(x, n, tokens, h, beta); });
  }

  bool cholesky_lower(double* a, int64_t n) override {
    cpu::check_nonnegative("cholesky_lower", n);
    device_.check(a, matrix_bytes(n, n, n, 8), "cholesky_lower", "a");
    return run_for_answer("cholesky_lower", [=] { return cpu::cholesky_lower(a, n); });
  }
  void invert_lower_triangular(double* l, int64_t n) override {
    cpu::check_nonnegative("invert_lower_triangular", n);
    device_.check(l, matrix_bytes(n, n, n, 8), "invert_lower_triangular", "l");
    enqueue("invert_lower_triangular", trace_cat::kCompute, 0, [=] { cpu::invert_lower_triangular(l, n); });
  }
  bool inverse_upper_factor(float* h, int64_t n) override {
    cpu::check_nonnegative("inverse_upper_factor", n);
    device_.check(h, matrix_bytes(n, n, n, 4), "inverse_upper_factor", "h");
    return run_for_answer("inverse_upper_factor_f32", [=] { return cpu::inverse_upper_factor(h, n); });
  }
  bool inverse_upper_factor(double* h, int64_t n) override {
    cpu::check_nonnegative("inverse_upper_factor", n);
    device_.check(h, matrix_bytes(n, n, n, 8), "inverse_upper_factor", "h");
    return run_for_answer("inverse_upper_factor", [=] { return cpu::inverse_upper_factor(h, n); });
  }

  void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs,
                     bool inverse) override {
    cpu::check_hadamard_args(rows, n, m);
    device_.check(x, matrix_bytes(rows, n, n, 4), "hadamard_rows", "x");
    device_.check(hm, count_bytes(rows > 0 ? m * m : 0, 4), "hadamard_rows", "hm");
    if (signs) device_.check(signs, count_bytes(rows > 0 ? n : 0, 4), "hadamard_rows", "signs");
    enqueue("hadamard_rows", trace_cat::kCompute, 0, [=] { cpu::hadamard_rows(x, rows, n, hm, m, signs, inverse); });
  }
  void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) override {
    cpu::check_nonnegative("rmsnorm", rows, dim);
    device_.check(x, matrix_bytes(rows, dim, dim, 4), "rmsnorm", "x");
    device_.check(w, count_bytes(rows > 0 ? dim : 0, 4), "rmsnorm", "w");
    device_.check(y, matrix_bytes(rows, dim, dim, 4), "rmsnorm", "y");
    enqueue("rmsnorm", trace_cat::kCompute, 0, [=] { cpu::rmsnorm(x, w, y, rows, dim, eps); });
  }
  void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
            const RopeTable& table) override {
    cpu::check_rope_args(nseq, seqlen, nheads, head_dim, table);
    const int64_t tokens = nseq * seqlen;
    device_.check(x, matrix_bytes(tokens, nheads * head_dim, nheads * head_dim, 4), "rope", "x");
    if (tokens > 0 && nheads > 0 && head_dim > 0) {
      // Positions 0..seqlen-1 are read (every sequence starts at 0).
      device_.check(table.cos, matrix_bytes(seqlen, table.half_dim, table.half_dim, 4), "rope", "table.cos");
      device_.check(table.sin, matrix_bytes(seqlen, table.half_dim, table.half_dim, 4), "rope", "table.sin");
    }
    enqueue("rope", trace_cat::kCompute, 0, [=] { cpu::rope(x, nseq, seqlen, nheads, head_dim, table); });
  }
  void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq, int64_t seqlen,
                 int64_t nheads, int64_t nkv, int64_t head_dim) override {
    cpu::check_attention_args(nseq, seqlen, nheads, nkv, head_dim);
    const int64_t tokens = nseq * seqlen;
    device_.check(q, matrix_bytes(tokens, nheads * head_dim, nheads * head_dim, 4), "attention", "q");
    device_.check(k, matrix_bytes(tokens, nkv * head_dim, nkv * head_dim, 4), "attention", "k");
    device_.check(v, matrix_bytes(tokens, nkv * head_dim, nkv * head_dim, 4), "attention", "v");
    device_.check(out, matrix_bytes(tokens, nheads * head_dim, nheads * head_dim, 4), "attention", "out");
    enqueue("attention", trace_cat::kCompute, 0, [=] { cpu::attention(q, k, v, out, nseq, seqlen, nheads, nkv, head_dim); });
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override {
    cpu::check_nonnegative("swiglu", n);
    device_.check(gate, count_bytes(n, 4), "swiglu", "gate");
    device_.check(up, count_bytes(n, 4), "swiglu", "up");
    device_.check(out, count_bytes(n, 4), "swiglu", "out");
    enqueue("swiglu", trace_cat::kCompute, 0, [=] { cpu::swiglu(gate, up, out, n); });
  }
  void subtract(const float* a, const float* b, float* out, int64_t n) override {
    cpu::check_nonnegative("subtract", n);
    device_.check(a, count_bytes(n, 4), "subtract", "a");
    device_.check(b, count_bytes(n, 4), "subtract", "b");
    device_.check(out, count_bytes(n, 4), "subtract", "out");
    enqueue("subtract", trace_cat::kCompute, 0, [=] { cpu::subtract(a, b, out, n); });
  }
  void add_inplace(float* y, const float* x, int64_t n) override {
    cpu::check_nonnegative("add_inplace", n);
    device_.check(y, count_bytes(n, 4), "add_inplace", "y");
    device_.check(x, count_bytes(n, 4), "add_inplace", "x");
    enqueue("add_inplace", trace_cat::kCompute, 0, [=] { cpu::add_inplace(y, x, n); });
  }
  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    cpu::check_nonnegative("add_bias", rows, cols);
    device_.check(y, matrix_bytes(rows, cols, cols, 4), "add_bias", "y");
    device_.check(bias, count_bytes(rows > 0 ? cols : 0, 4), "add_bias", "bias");
    enqueue("add_bias", trace_cat::kCompute, 0, [=] { cpu::add_bias(y, bias, rows, cols); });
  }

  void gptq_sweep(const SweepProblem& p, const SweepOutput& out, SweepPrecision precision) override {
    validate_sweep_problem(p, out, "emulated device: gptq_sweep", false);
    const uint64_t mn = matrix_bytes(p.m, p.n, p.n, 1), nn = matrix_bytes(p.n, p.n, p.n, 1);
    const char* op = "gptq_sweep";
    device_.check(p.w, mn * 4, op, "w");
    device_.check(p.u, nn * 4, op, "u");
    if (p.p1) device_.check(p.p1, nn * 4, op, "p1");
    if (p.p2) device_.check(p.p2, nn * 4, op, "p2");
    device_.check(p.perm, count_bytes(p.n, 4), op, "perm");
    if (p.dead) device_.check(p.dead, count_bytes(p.n, 1), op, "dead");
    device_.check(out.codes, mn, op, "codes");
    device_.check(out.q, mn * 4, op, "q");
    device_.check(out.scales, count_bytes(p.ngroups() * p.m, 4), op, "scales");
    device_.check(out.zeros, count_bytes(p.ngroups() * p.m, 4), op, "zeros");
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
      device_.check(a, ta == Trans::N ? matrix_bytes(m, k, lda, elem) : matrix_bytes(k, m, lda, elem), op, "a");
      device_.check(b, tb == Trans::N ? matrix_bytes(k, n, ldb, elem) : matrix_bytes(n, k, ldb, elem), op, "b");
    }
    device_.check(c, matrix_bytes(m, n, ldc, elem), op, "c");
  }

  // Sleeps so `bytes` take as long as the stated bandwidth would give them.
  void throttle(uint64_t bytes) const {
    if (pcie_gbps_ <= 0) return;
    std::this_thread::sleep_for(std::chrono::duration<double>(static_cast<double>(bytes) / (pcie_gbps_ * 1e9)));
  }

  // Waits until everything queued has run (or been skipped after an error).
  void drain() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
  }

  // One queued item: what it is for the trace, and the work.
  struct Work {
    const char* name;
    const char* category;
    uint64_t bytes;
    std::function<void()> run;
  };

  void enqueue(const char* name, const char* category, uint64_t bytes, std::function<void()> work) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back({name, category, bytes, std::move(work)});
    }
    cv_.notify_one();
  }
  // Ops whose result the host needs now (did the factorization succeed?).
  bool run_for_answer(const char* name, std::function<bool()> work) {
    bool answer = false;
    enqueue(name, trace_cat::kCompute, 0, [&answer, work = std::move(work)] { answer = work(); });
    synchronize();
    return answer;
  }

  void run_queue() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || (!paused_ && !queue_.empty()); });
      if (queue_.empty()) return;  // stop_ with nothing left
      Work work = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
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
          trace->complete(work.name, work.category, t0, trace->now_us() - t0, trace->lane("device (emulated, one stream)"),
                          std::move(args));
        }
      }
      lock.lock();
      if (failed && !error_) error_ = failed;
      busy_ = false;
      if (queue_.empty()) idle_cv_.notify_all();
    }
  }

  EmulatedDeviceMemory device_;
  MemoryLedger memory_;
  const double pcie_gbps_;
  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Work> queue_;
  TraceRecorder* trace_ = nullptr;  // guarded by mu_
  bool busy_ = false, stop_ = false, paused_ = false;
  std::exception_ptr error_;
  std::thread worker_;
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
