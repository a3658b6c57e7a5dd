// A Backend that forwards every call to another one: the base for decorators
// that observe or alter a few calls (counting factorizations in a test,
// injecting faults, tracing) and leave the rest alone. Buffers it allocates
// come from the inner backend's memory; the inner backend must outlive it.
#pragma once

#include <string>

#include "kernels/backend.h"

namespace streamq {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(Backend& inner) : inner_(inner) {}

  std::string name() const override { return inner_.name(); }
  bool supports(Op op) const override { return inner_.supports(op); }
  MemoryLedger& memory() override { return inner_.memory(); }
  bool host_addressable() const override { return inner_.host_addressable(); }
  MemoryLedger& pinned_memory() override { return inner_.pinned_memory(); }
  void copy_from_host(void* dst, const void* src, uint64_t bytes) override { inner_.copy_from_host(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, uint64_t bytes) override { inner_.copy_to_host(dst, src, bytes); }
  void copy_within(void* dst, const void* src, uint64_t bytes) override { inner_.copy_within(dst, src, bytes); }
  void fill_bytes(void* dst, unsigned char value, uint64_t bytes) override { inner_.fill_bytes(dst, value, bytes); }
  void synchronize() override { inner_.synchronize(); }
  void copy_from_host_on(Stream s, void* dst, const void* src, uint64_t bytes) override {
    inner_.copy_from_host_on(s, dst, src, bytes);
  }
  void copy_to_host_on(Stream s, void* dst, const void* src, uint64_t bytes) override {
    inner_.copy_to_host_on(s, dst, src, bytes);
  }
  Event record(Stream s) override { return inner_.record(s); }
  void wait(Stream s, const Event& e) override { inner_.wait(s, e); }
  void wait_host(const Event& e) override { inner_.wait_host(e); }

  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    inner_.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
            const double* b, int64_t ldb, double beta, double* c, int64_t ldc) override {
    inner_.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void bf16_to_f32(const uint16_t* in, float* out, int64_t n) override { inner_.bf16_to_f32(in, out, n); }
  void gram_bf16_accumulate(const uint16_t* x, int64_t n, int64_t tokens, float* h, float beta) override {
    inner_.gram_bf16_accumulate(x, n, tokens, h, beta);
  }
  bool cholesky_lower(double* a, int64_t n) override { return inner_.cholesky_lower(a, n); }
  void svd(double* a, int64_t m, int64_t n, double* s, double* u, double* vt) override {
    inner_.svd(a, m, n, s, u, vt);
  }
  void invert_lower_triangular(double* l, int64_t n) override { inner_.invert_lower_triangular(l, n); }
  bool inverse_upper_factor(double* h, int64_t n) override { return inner_.inverse_upper_factor(h, n); }
  bool inverse_upper_factor(float* h, int64_t n) override { return inner_.inverse_upper_factor(h, n); }
  void hadamard_rows(float* x, int64_t rows, int64_t n, const float* hm, int64_t m, const float* signs,
                     bool inverse) override {
    inner_.hadamard_rows(x, rows, n, hm, m, signs, inverse);
  }
  void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) override {
    inner_.rmsnorm(x, w, y, rows, dim, eps);
  }
  void rope(float* x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
            const RopeTable& table) override {
    inner_.rope(x, nseq, seqlen, nheads, head_dim, table);
  }
  void attention(const float* q, const float* k, const float* v, float* out, int64_t nseq, int64_t seqlen,
                 int64_t nheads, int64_t nkv, int64_t head_dim) override {
    inner_.attention(q, k, v, out, nseq, seqlen, nheads, nkv, head_dim);
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override { inner_.swiglu(gate, up, out, n); }
  void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t dim,
                        float eps) override {
    inner_.rmsnorm_backward(x, w, dy, dx, rows, dim, eps);
  }
  void rope_backward(float* d, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                     const RopeTable& table) override {
    inner_.rope_backward(d, nseq, seqlen, nheads, head_dim, table);
  }
  void attention_backward(const float* q, const float* k, const float* v, const float* dout, float* dq, float* dk,
                          float* dv, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t nkv,
                          int64_t head_dim) override {
    inner_.attention_backward(q, k, v, dout, dq, dk, dv, nseq, seqlen, nheads, nkv, head_dim);
  }
  void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                       int64_t n) override {
    inner_.swiglu_backward(gate, up, dout, dgate, dup, n);
  }
  void fake_quant_ste(const float* w, int64_t rows, int64_t cols, int64_t group, const double* params,
                      int32_t maxq, bool free_min, float* wq, uint8_t* mask) override {
    inner_.fake_quant_ste(w, rows, cols, group, params, maxq, free_min, wq, mask);
  }
  void ste_mask_grad(const uint8_t* mask, float* g, int64_t n) override { inner_.ste_mask_grad(mask, g, n); }
  void sde_banded_product(const float* u, const float* s, const float* params, int64_t rows, int64_t rank,
                          int64_t band, float* ud) override {
    inner_.sde_banded_product(u, s, params, rows, rank, band, ud);
  }
  void sde_band_grad(const float* m, const float* vt, int64_t rank, int64_t cols, int64_t band,
                     float* dparams) override {
    inner_.sde_band_grad(m, vt, rank, cols, band, dparams);
  }
  void add_inplace(float* y, const float* x, int64_t n) override { inner_.add_inplace(y, x, n); }
  void set_trace(TraceRecorder* trace) override { inner_.set_trace(trace); }
  void subtract(const float* a, const float* b, float* out, int64_t n) override { inner_.subtract(a, b, out, n); }
  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override {
    inner_.add_bias(y, bias, rows, cols);
  }
  void gptq_sweep(const SweepProblem& p, const SweepOutput& out, SweepPrecision precision) override {
    inner_.gptq_sweep(p, out, precision);
  }

 protected:
  Backend& inner_;
};

}  // namespace streamq
