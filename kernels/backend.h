// The compute interface every backend (CPU now, CUDA next) implements, in the
// shape of ggml-backend: a backend owns its memory (typed buffers from a
// budgeted pool, copies in and out queued with the ops, synchronize), says
// which ops it has (supports(op)), and runs them. Op arguments are raw
// pointers into the backend's own memory (Buffer<T>::data(), or an offset
// into one), row-major, with a shape comment per argument; nothing here knows
// about models or files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/gptq_sweep_problem.h"
#include "kernels/memory_ledger.h"

namespace streamq {

enum class Trans { N, T };

// Rotary embedding tables for positions [0, max_pos): cos/sin of shape
// [max_pos, head_dim/2]. Built once per model by the caller (model knows theta
// and rope scaling), consumed by Backend::rope; the tables live in the
// backend's memory like any other op argument.
struct RopeTable {
  int64_t max_pos = 0;
  int64_t half_dim = 0;
  const float* cos = nullptr;  // [max_pos, half_dim]
  const float* sin = nullptr;  // [max_pos, half_dim]
};

// Every op of the interface, for supports() and for naming ops in reports.
enum class Op {
  GemmF32,
  GemmF64,
  CholeskyLower,
  InvertLowerTriangular,
  InverseUpperFactor,
  InverseUpperFactorF32,  // inverse_upper_factor(float*, ...)
  Rmsnorm,
  Rope,
  Attention,
  Swiglu,
  AddInplace,
  Subtract,
  AddBias,
  GramBf16,
  HadamardRows,
  Bf16ToF32,    // bf16_to_f32: widening bf16 resident weights before a GEMM
  GptqSweep32,  // gptq_sweep(..., SweepPrecision::F32)
  GptqSweep64,  // gptq_sweep(..., SweepPrecision::F64)
  // The backward passes of a decoder block's ops (issue 18: gradient-based
  // training of a block's weights; src/model/block_backward.h).
  RmsnormBackward,
  RopeBackward,
  AttentionBackward,
  SwigluBackward,
  Svd,  // svd: SDE's decomposition of a linear (issue 18)
  FakeQuantSte,  // fake_quant_ste: SDE training's weight fake quantization with its STE mask
  SteMaskGrad,   // ste_mask_grad: the STE's backward
  SdeBandedProduct,  // sde_banded_product: U D for SDE's W' = (U D) Vt
  SdeBandGrad,       // sde_band_grad: the band's entries of dL/dD
};
inline constexpr Op kAllOps[] = {Op::GemmF32,    Op::GemmF64,    Op::CholeskyLower, Op::InvertLowerTriangular,
                                 Op::InverseUpperFactor, Op::InverseUpperFactorF32, Op::Rmsnorm, Op::Rope,     Op::Attention,
                                 Op::Swiglu,     Op::AddInplace, Op::Subtract,      Op::AddBias,       Op::GramBf16,
                                 Op::HadamardRows, Op::Bf16ToF32,
                                 Op::GptqSweep32, Op::GptqSweep64,
                                 Op::RmsnormBackward, Op::RopeBackward, Op::AttentionBackward, Op::SwigluBackward,
                                 Op::Svd, Op::FakeQuantSte, Op::SteMaskGrad,
                                 Op::SdeBandedProduct, Op::SdeBandGrad};
// "gemm_f32", "gptq_sweep64", ...
const char* op_name(Op op);

// The arithmetic of Backend::gptq_sweep: float32 throughout (what a GPU
// runs), or the same loops in float64 on the same float inputs (the
// reference every float32 sweep is held to).
enum class SweepPrecision { F32, F64 };
// The arithmetic of the Hessian's factor and compensation products
// (factor_hessian, src/methods/gptq.h): float64 (the reference, and the CPU
// path), or float32 on float inputs rounded from H (what a GPU factors fast,
// and what the GPTQ papers' code does), widened back.
enum class FactorPrecision { F64, F32 };

class Backend;
class TraceRecorder;

// count elements of T in one backend's memory (host memory for the CPU,
// device memory for CUDA), drawn from that backend's budgeted pool and
// returned to it on destruction. Move-only; a default-constructed one holds
// nothing. Contents start uninitialized. data() may be dereferenced on the
// host only when backend()->host_addressable(); otherwise it is an argument
// for the backend's ops and copies. The backend must outlive its buffers.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;

  T* data() const { return mem_.get(); }
  size_t size() const { return mem_.size(); }
  uint64_t bytes() const { return mem_.bytes(); }
  bool empty() const { return mem_.size() == 0; }
  Backend* backend() const { return owner_; }
  void reset() {
    mem_.reset();
    owner_ = nullptr;
  }

 private:
  friend class Backend;
  Buffer(Backend* owner, PoolBuffer<T> mem) : owner_(owner), mem_(std::move(mem)) {}
  Backend* owner_ = nullptr;
  PoolBuffer<T> mem_;
};

// count elements of T in pinned (page-locked) host memory that `backend`
// allocated and counts in its pinned_memory() ledger: host memory the host
// reads and writes directly (data() is always a host pointer), from and to
// which a device copies asynchronously. On a device a copy between a
// pinned buffer and device memory returns before it has run: the host must
// not touch the bytes until the copy's event has passed (wait_host). Host
// memory that is not pinned (pageable: a std::vector) is copied
// synchronously instead (the call returns once the copy has run), as CUDA
// does. Move-only; the backend must outlive its pinned buffers.
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&&) noexcept = default;
  PinnedBuffer& operator=(PinnedBuffer&&) noexcept = default;

  T* data() const { return mem_.get(); }
  size_t size() const { return mem_.size(); }
  uint64_t bytes() const { return mem_.bytes(); }
  bool empty() const { return mem_.size() == 0; }
  T& operator[](size_t i) const { return mem_.get()[i]; }
  T* begin() const { return mem_.get(); }
  T* end() const { return mem_.get() + mem_.size(); }
  void reset() { mem_.reset(); }

 private:
  friend class Backend;
  explicit PinnedBuffer(PoolBuffer<T> mem) : mem_(std::move(mem)) {}
  PoolBuffer<T> mem_;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- which ops this backend has. Calling one it lacks throws
  // InternalError (check_supported); nothing ever falls back silently.
  virtual bool supports(Op op) const = 0;

  // ---- memory. Every buffer comes from this ledger: its limit (a
  // --gpu-mem-limit style budget), what is in use, the high-water mark.
  virtual MemoryLedger& memory() = 0;
  // True when the backend's memory is host memory (the CPU backend): buffers
  // and host arrays are then interchangeable as op arguments.
  virtual bool host_addressable() const = 0;
  // Pinned host memory (alloc_pinned), in a ledger of its own: it is host
  // memory (--host-mem-limit's, not the device's), and page-locked memory is
  // a scarcer kind worth its own high-water mark in the report. CPU: plain
  // aligned host memory, copies being memcpy anyway; emulated: host memory
  // the device knows as pinned (its copies run asynchronously); CUDA:
  // cudaHostAlloc.
  virtual MemoryLedger& pinned_memory() = 0;

  // Copies, queued in order with the ops. Asynchronous where the backend is
  // and the host side is pinned memory (alloc_pinned): the host side must
  // then stay valid and unchanged until synchronize() (or the copy's event).
  // With pageable host memory a device's copy returns once the host side is
  // no longer needed (CUDA stages an upload, completes a download), so the
  // host may reuse or free it at once.
  // `dst`/`src` on the backend side are pointers into this backend's memory.
  virtual void copy_from_host(void* dst, const void* host_src, uint64_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, uint64_t bytes) = 0;
  virtual void copy_within(void* dst, const void* src, uint64_t bytes) = 0;
  // Sets `bytes` bytes at dst to `value`.
  virtual void fill_bytes(void* dst, unsigned char value, uint64_t bytes) = 0;
  // Returns once every queued op and copy has finished, on every stream
  // (their errors surface here at the latest).
  virtual void synchronize() = 0;

  // ---- streams and events, CUDA's model. Every op, and the copies above,
  // run on the compute stream; an upload and a download stream (a GPU's two
  // copy engines) let transfers overlap compute. record() marks everything
  // queued on a stream so far; wait(s, e) makes the work queued on s after it
  // wait for that mark; wait_host(e) blocks the caller until the mark has
  // passed (an error of the work before it surfaces there, as in
  // synchronize()). A buffer that one stream writes and another reads or
  // writes must be ordered by an event between the two: the emulated device
  // refuses unordered cross-stream use of a buffer when the second is queued.
  // A backend with one queue (the CPU) keeps these defaults: every stream is
  // its one queue, so order holds already and an event has passed once
  // synchronize() returns.
  enum class Stream { Compute = 0, Upload = 1, Download = 2 };
  static constexpr int kStreams = 3;
  struct Event {
    Stream stream = Stream::Compute;
    uint64_t seq = 0;  // the stream's work items queued up to the mark; 0: nothing to wait for
  };
  virtual void copy_from_host_on(Stream s, void* dst, const void* host_src, uint64_t bytes) {
    (void)s;
    copy_from_host(dst, host_src, bytes);
  }
  virtual void copy_to_host_on(Stream s, void* host_dst, const void* src, uint64_t bytes) {
    (void)s;
    copy_to_host(host_dst, src, bytes);
  }
  virtual Event record(Stream s) { return Event{s, 0}; }
  virtual void wait(Stream s, const Event& e) { (void)s, (void)e; }
  virtual void wait_host(const Event& e) {
    (void)e;
    synchronize();
  }
  // A device records the work it runs (ops, copies) on trace lanes of its
  // own, named "device ..." (`streamq profile` reports how busy they were);
  // null stops it. The CPU backend runs ops on the calling thread, inside
  // the caller's spans, and records nothing. The trace must outlive its use
  // (set null before destroying it).
  virtual void set_trace(TraceRecorder* trace) { (void)trace; }

  // Typed conveniences over the above.
  template <typename T>
  Buffer<T> alloc(size_t count, const std::string& what) {
    return Buffer<T>(this, PoolBuffer<T>(memory(), count, what));
  }
  // count elements of pinned host memory (contents uninitialized).
  template <typename T>
  PinnedBuffer<T> alloc_pinned(size_t count, const std::string& what) {
    return PinnedBuffer<T>(PoolBuffer<T>(pinned_memory(), count, what));
  }
  // Queues src[0, count) -> dst[offset, offset + count).
  template <typename T>
  void upload(const Buffer<T>& dst, const T* src, size_t count, size_t offset = 0) {
    check_range(dst.backend(), dst.size(), offset, count, "upload");
    if (count > 0) copy_from_host(dst.data() + offset, src, count * sizeof(T));
  }
  // Queues src[offset, offset + count) -> dst[0, count).
  template <typename T>
  void download(T* dst, const Buffer<T>& src, size_t count, size_t offset = 0) {
    check_range(src.backend(), src.size(), offset, count, "download");
    if (count > 0) copy_to_host(dst, src.data() + offset, count * sizeof(T));
  }
  // A new buffer holding a copy of host (queued: host must outlive the copy).
  template <typename T>
  Buffer<T> upload_new(const std::vector<T>& host, const std::string& what) {
    Buffer<T> b = alloc<T>(host.size(), what);
    upload(b, host.data(), host.size());
    return b;
  }
  // The same on a copy stream (order it against the compute stream with
  // record/wait; the host side stays valid and unchanged until the copy's
  // event has passed).
  template <typename T>
  void upload_on(Stream s, const Buffer<T>& dst, const T* src, size_t count, size_t offset = 0) {
    check_range(dst.backend(), dst.size(), offset, count, "upload");
    if (count > 0) copy_from_host_on(s, dst.data() + offset, src, count * sizeof(T));
  }
  template <typename T>
  void download_on(Stream s, T* dst, const Buffer<T>& src, size_t count, size_t offset = 0) {
    check_range(src.backend(), src.size(), offset, count, "download");
    if (count > 0) copy_to_host_on(s, dst, src.data() + offset, count * sizeof(T));
  }
  // The whole buffer on the host: waits for everything queued before.
  template <typename T>
  std::vector<T> download_all(const Buffer<T>& src) {
    std::vector<T> host(src.size());
    download(host.data(), src, src.size());
    synchronize();
    return host;
  }

  // ---- ops (pointers in this backend's memory).
  // C[m,n] = alpha * op(A) * op(B) + beta * C. op(A) is [m,k], op(B) is [k,n].
  // lda/ldb/ldc are row strides of the stored (untransposed) matrices.
  virtual void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc) = 0;
  virtual void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                    double* c, int64_t ldc) = 0;
  // out[i] = the float value of bf16 bits in[i] (exact: bf16 is float32's
  // top half), for n elements; out must not overlap in. What a linear whose
  // weight is resident in bf16 runs before its GEMM (ResidentBlock).
  virtual void bf16_to_f32(const uint16_t* in /*[n]*/, float* out /*[n]*/, int64_t n) = 0;
  // h[n,n] = beta * h + x^T x for x bf16 bits [tokens, n], float32
  // accumulation of the exact bf16 products (the Hessian's Gram product).
  virtual void gram_bf16_accumulate(const uint16_t* x_bf16 /*[tokens, n]*/, int64_t n, int64_t tokens,
                                    float* h /*[n, n]*/, float beta) = 0;

  // In-place Cholesky of a symmetric positive definite a[n,n]: on success the
  // lower triangle holds L with a = L L^T and the strict upper triangle is zeroed.
  // Returns false (a is then unspecified) when a is not positive definite.
  // Returns once the answer is known (a synchronization on a device).
  virtual bool cholesky_lower(double* a, int64_t n) = 0;
  // In-place inverse of a lower-triangular l[n,n] (strict upper stays zero).
  virtual void invert_lower_triangular(double* l, int64_t n) = 0;
  // GPTQ's factor: given SPD h[n,n], overwrite it with the upper-triangular U
  // such that h^-1 = U^T U (the code's cholesky(cholesky_inverse(cholesky(H)),
  // upper=True)); strict lower triangle zeroed. Returns false when h (or h^-1)
  // is not positive definite.
  virtual bool inverse_upper_factor(double* h, int64_t n) = 0;
  // The same in float32 (what a GPU factors fast; the GPTQ papers' code
  // factors in float32 too): rounding error grows with H's condition number.
  virtual bool inverse_upper_factor(float* h, int64_t n) = 0;
  // The thin SVD of row-major a[m,n] (overwritten): a = u[m,r] diag(s[r])
  // vt[r,n], r = min(m, n), s descending (CPU: LAPACK dgesdd; CUDA: cuSOLVER
  // dgesvd). The factors are unique up to the signs of paired columns of u
  // and rows of vt (and within repeated singular values), so backends agree
  // on s and on the product, not on the bits. Throws InternalError naming the
  // shape for a NaN input or when the iteration does not converge. Returns
  // once done (a synchronization on a device).
  virtual void svd(double* a, int64_t m, int64_t n, double* s, double* u, double* vt) = 0;

  // y[rows,dim] = x / sqrt(mean(x^2) + eps) * w; w[dim]. y may alias x.
  virtual void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim,
                       float eps) = 0;
  // HF rotate_half RoPE, in place, on x[nseq*seqlen, nheads*head_dim]; token t of
  // a sequence has position t (every sequence starts at position 0).
  virtual void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                    const RopeTable& table) = 0;
  // Causal grouped-query attention, softmax(q k^T / sqrt(head_dim)) v per head.
  // q[nseq*seqlen, nheads*hd], k and v [nseq*seqlen, nkv*hd], out[nseq*seqlen,
  // nheads*hd]; query head h reads kv head h / (nheads/nkv). Never holds more
  // than one head's score matrix per worker.
  virtual void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq,
                         int64_t seqlen, int64_t nheads, int64_t nkv, int64_t head_dim) = 0;
  // out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
  virtual void swiglu(const float* gate, const float* up, float* out, int64_t n) = 0;
  // y[i] += x[i].
  virtual void add_inplace(float* y, const float* x, int64_t n) = 0;
  // out[i] = a[i] - b[i] (GPTAQ's dX = X~ - X); out may alias a or b.
  virtual void subtract(const float* a, const float* b, float* out, int64_t n) = 0;
  // y[rows, cols] += bias[cols] broadcast over rows.
  virtual void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) = 0;

  // ---- backward passes (gradients of a loss L through the ops above; every
  // output is overwritten).
  // dx[rows,dim] = dL/dx of y = rmsnorm(x, w) given dy = dL/dy (w frozen: no
  // dw); row sums accumulated in double as the forward's. dx may alias dy.
  virtual void rmsnorm_backward(const float* x /*[rows,dim]*/, const float* w /*[dim]*/,
                                const float* dy /*[rows,dim]*/, float* dx /*[rows,dim]*/, int64_t rows,
                                int64_t dim, float eps) = 0;
  // The transpose of rope (the inverse rotation), in place on
  // d[nseq*seqlen, nheads*head_dim]: dL/dx from dL/d(rope(x)).
  virtual void rope_backward(float* d, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                             const RopeTable& table) = 0;
  // The gradients of attention's q, k, v (shapes as attention's) given dout
  // = dL/dout [nseq*seqlen, nheads*hd]; dk and dv sum over the query heads
  // that share a kv head. Recomputes the softmax; never holds more than one
  // head's score matrix per worker.
  virtual void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq,
                                  float* dk, float* dv, int64_t nseq, int64_t seqlen, int64_t nheads,
                                  int64_t nkv, int64_t head_dim) = 0;
  // dgate[i], dup[i] from dout[i] = dL/d(silu(gate[i]) * up[i]). An output may
  // alias an input (each element reads its inputs before writing), not the
  // other output.
  virtual void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                               int64_t n) = 0;

  // The straight-through estimator's fake quantization (SDE training,
  // src/methods/sde.h) of w [rows, cols] on per-(row, group) grids:
  // params [rows, ceil(cols / group)] pairs {scale, zero} (float64, as
  // GridParams), group in 1..cols. In float64: c = round-half-even(w /
  // scale) + zero, or round-half-even((w - zero) / scale) with free_min;
  // code = clamp(c, 0, maxq); wq = scale (code - zero), or scale code +
  // zero with free_min, rounded to float; mask = 1 where c lies in
  // [0, maxq], else 0. Every operation correctly rounded (no contraction):
  // the same bytes on every backend.
  virtual void fake_quant_ste(const float* w, int64_t rows, int64_t cols, int64_t group, const double* params,
                              int32_t maxq, bool free_min, float* wq, uint8_t* mask) = 0;
  // g[i] = 0 where mask[i] == 0, else unchanged (the STE's backward).
  virtual void ste_mask_grad(const uint8_t* mask, float* g, int64_t n) = 0;
  // SDE (src/methods/sde.h): ud [rows, rank] = U D for u [rows, rank], D =
  // diag(s + P[0]) + the band (P [(2 band + 1), rank]: row 2i-1 the i-th
  // upper diagonal D[j][j+i], row 2i the lower D[j+i][j]), each element
  // u[a][c] (s[c] + P[0][c]) then, for i = 1..band, the upper then the lower
  // term added, in float, each operation rounded. band in 0..rank-1.
  virtual void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                                  int64_t band, float* ud) = 0;
  // dparams [(2 band + 1) rank] = the band's entries of M Vt^T (m, vt
  // [rank, cols]): entry (slot, j) the dot of rows j and j (slot 0), j and
  // j+i (slot 2i-1: m's j, vt's j+i), j+i and j (slot 2i), 0 where j+i >=
  // rank; float products summed in float64 in four interleaved partial sums
  // (k mod 4), ((s0 + s1) + (s2 + s3)), rounded to float.
  virtual void sde_band_grad(const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band,
                             float* dparams) = 0;

  // The normalized Hadamard transform of every row of x[rows, n], in place
  // (src/methods/hadamard.h, the rotations of issue 17): y = H_n diag(s) x /
  // sqrt(n) with H_n = H_m (x) H_{n/m}, n/m a power of two, x's index
  // a * (n/m) + b; hm [m, m] holds H_m's +-1 as float ([1] for m = 1), signs
  // [n] or null for none; `inverse` applies diag(s) H_n^T y / sqrt(n).
  virtual void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs,
                             bool inverse) = 0;

  // The exact-variant GPTQ sweep of one linear (kernels/gptq_sweep_problem.h;
  // src/methods/sweep_problem.h builds the problem from a factored Hessian
  // and a config). Every pointer of p and out is in this backend's memory.
  // Returns once the outputs are written; throws InternalError naming the
  // first non-finite weight (row, original column).
  virtual void gptq_sweep(const SweepProblem& p, const SweepOutput& out, SweepPrecision precision) = 0;

 protected:
  // Throws InternalError when !supports(op): "<backend> does not support <op>".
  void check_supported(Op op) const;

 private:
  void check_range(const Backend* owner, size_t size, size_t offset, size_t count, const char* what) const;
};

// The CPU backend's options.
struct CpuBackendOptions {
  // Bytes its pool may hold at once (buffers only; ops' own scratch is
  // not counted). Unlimited by default: host memory is budgeted by the
  // pipeline's memory plan (--host-mem-limit).
  uint64_t memory_limit = UINT64_MAX;
};

// The CPU backend: single-threaded OpenBLAS/LAPACK calls on fixed tiles for
// GEMM and the factorizations, oneTBB for the parallel loops (so results do
// not depend on the thread count); every op supported (it is the fallback
// and the reference the op tests hold other backends to).
std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options = {});

}  // namespace streamq
