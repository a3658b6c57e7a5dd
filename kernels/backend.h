// The compute interface every backend (CPU now, CUDA next) implements. Buffers
// are raw pointers in the backend's memory space, row-major, with a shape
// comment per argument; nothing here knows about models or files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace streamq {

enum class Trans { N, T };

// Rotary embedding tables for positions [0, max_pos): cos/sin of shape
// [max_pos, head_dim/2]. Built once per model by the caller (model knows theta
// and rope scaling), consumed by Backend::rope.
struct RopeTable {
  int64_t max_pos = 0;
  int64_t half_dim = 0;
  const float* cos = nullptr;  // [max_pos, half_dim]
  const float* sin = nullptr;  // [max_pos, half_dim]
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // C[m,n] = alpha * op(A) * op(B) + beta * C. op(A) is [m,k], op(B) is [k,n].
  // lda/ldb/ldc are row strides of the stored (untransposed) matrices.
  virtual void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc) = 0;
  virtual void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                    double* c, int64_t ldc) = 0;

  // In-place Cholesky of a symmetric positive definite a[n,n]: on success the
  // lower triangle holds L with a = L L^T and the strict upper triangle is zeroed.
  // Returns false (a is then unspecified) when a is not positive definite.
  virtual bool cholesky_lower(double* a, int64_t n) = 0;
  // In-place inverse of a lower-triangular l[n,n] (strict upper stays zero).
  virtual void invert_lower_triangular(double* l, int64_t n) = 0;
  // GPTQ's factor: given SPD h[n,n], overwrite it with the upper-triangular U
  // such that h^-1 = U^T U (the code's cholesky(cholesky_inverse(cholesky(H)),
  // upper=True)); strict lower triangle zeroed. Returns false when h (or h^-1)
  // is not positive definite.
  virtual bool inverse_upper_factor(double* h, int64_t n) = 0;

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
  // y[rows, cols] += bias[cols] broadcast over rows.
  virtual void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) = 0;
};

// The CPU backend: OpenBLAS for GEMM, LAPACKE for factorizations, oneTBB for
// the parallel loops.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace streamq
