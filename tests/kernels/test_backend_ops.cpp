// The backend op table, in the style of llama.cpp's test-backend-ops: every
// case {op, shape, tolerance and its reason} (backend_op_cases.h) runs on
// every backend this binary was built with, against the CPU float64
// reference; an op a backend does not support is reported as such and must
// throw when called (never a silent fallback). The contracts beyond numbers
// are test_backend_contracts.cpp. The CPU test binary has the CPU backend;
// the GPU binaries compile this same file (tests/gpu/test_backend_ops.cpp)
// and add the CUDA backend (backends_under_test.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "tests/kernels/backend_op_backward_cases.h"
#include "tests/kernels/backend_op_cases.h"
#include "tests/kernels/backend_op_sde_band_cases.h"
#include "tests/kernels/backend_op_ste_cases.h"
#include "tests/kernels/backend_op_svd_case.h"
#include "tests/kernels/backend_op_sweep_case.h"
#include "tests/kernels/backends_under_test.h"
#include "tests/support/backend_test_util.h"

namespace streamq::test {
namespace {

// ---- the table

template <typename T>
void add_gemm_cases(std::vector<std::unique_ptr<OpCase>>& t) {
  for (Trans ta : {Trans::N, Trans::T})
    for (Trans tb : {Trans::N, Trans::T}) {
      for (int64_t m : {1, 7, 33, 130})
        for (int64_t n : {1, 7, 33, 130})
          for (int64_t k : {1, 7, 33, 130})
            for (T beta : {T(0), T(-0.75)}) t.push_back(std::make_unique<GemmCase<T>>(ta, tb, m, n, k, beta));
      // Large enough for tiled and split-k GEMM kernels; not multiples of 32 or 128.
      t.push_back(std::make_unique<GemmCase<T>>(ta, tb, 300, 513, 1031, T(0)));
      t.push_back(std::make_unique<GemmCase<T>>(ta, tb, 257, 129, 2049, T(0.5)));
    }
}

// The backward ops (issue 18), shapes as their forwards' (odd ones too).
void add_backward_cases(std::vector<std::unique_ptr<OpCase>>& t) {
  for (auto [rows, dim] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {2, 33}, {300, 64}, {17, 4097}})
    for (float eps : {1e-5f, 1e-6f}) t.push_back(std::make_unique<RmsnormBackwardCase>(rows, dim, eps));
  for (auto [nseq, seqlen, nheads, hd] : std::vector<std::array<int64_t, 4>>{
           {1, 1, 1, 2}, {2, 5, 3, 8}, {1, 70, 1, 64}, {3, 33, 4, 6}})
    t.push_back(std::make_unique<RopeBackwardCase>(nseq, seqlen, nheads, hd));
  for (const AttentionCase& c : {AttentionCase{1, 1, 4, 1, 8}, AttentionCase{2, 5, 8, 4, 8},
                                 AttentionCase{2, 64, 8, 1, 64}, AttentionCase{3, 65, 6, 2, 13},
                                 AttentionCase{1, 300, 4, 2, 128}, AttentionCase{2, 33, 3, 3, 1}})
    t.push_back(std::make_unique<AttentionBackwardCase>(c));
  for (int64_t n : {1, 7, 1000, 100003}) t.push_back(std::make_unique<SwigluBackwardCase>(n));
}

std::vector<std::unique_ptr<OpCase>> op_table() {
  std::vector<std::unique_ptr<OpCase>> t;
  add_gemm_cases<float>(t);
  add_gemm_cases<double>(t);
  for (int64_t n : {1, 7, 64, 130, 257})
    for (int64_t tokens : {1, 33, 1000})
      for (float beta : {0.0f, 1.0f}) t.push_back(std::make_unique<GramCase>(n, tokens, beta));
  t.push_back(std::make_unique<GramCase>(512, 2049, 0.0f));
  t.push_back(std::make_unique<GramCase>(33, 0, 0.0f));  // no tokens: h = 0, not NaN
  t.push_back(std::make_unique<GramCase>(33, 0, 0.5f));  // no tokens: h = beta h exactly
  // 255, 256, 257, 513: one below, at and above the CPU's factor tile (256), and three tiles.
  for (FactorOp f : {FactorOp::Cholesky, FactorOp::InvertLower, FactorOp::InverseUpper, FactorOp::InverseUpperF32})
    for (int64_t n : {1, 2, 7, 33, 130, 255, 256, 257, 513}) t.push_back(std::make_unique<FactorCase>(f, n));
  for (auto [rows, dim] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {1, 7}, {3, 7}, {3, 64}, {2, 33}, {300, 64}, {17, 4096}, {300, 4097}, {70000, 3}})
    for (float eps : {1e-5f, 1e-6f}) t.push_back(std::make_unique<RmsnormCase>(rows, dim, eps));
  for (int64_t nseq : {1, 2})
    for (int64_t seqlen : {1, 5, 70})
      for (int64_t nheads : {1, 3})
        for (int64_t hd : {2, 8, 64}) t.push_back(std::make_unique<RopeCase>(nseq, seqlen, nheads, hd));
  for (auto [nseq, seqlen, nheads, hd] : std::vector<std::array<int64_t, 4>>{
           {1, 7, 5, 64}, {3, 300, 4, 128}, {2, 33, 3, 6}, {1, 4096, 2, 128}})
    t.push_back(std::make_unique<RopeCase>(nseq, seqlen, nheads, hd));
  // head_dim <= 128: the CUDA kernel's register accumulators end there
  // (kCudaAttentionMaxHeadDim; what a backend refuses is a contract,
  // test_backend_contracts.cpp). seqlen 4096 at head_dim 8: the float64
  // reference costs seqlen^2 head_dim.
  std::vector<AttentionCase> attention;
  for (int64_t seqlen : {1, 5, 64, 300})
    for (int64_t nkv : {4, 8, 1})
      for (int64_t hd : {8, 64}) attention.push_back({2, seqlen, 8, nkv, hd});
  for (int64_t seqlen : {63, 65, 129})
    for (int64_t hd : {1, 3, 13}) attention.push_back({3, seqlen, 6, 2, hd});
  for (const AttentionCase& c : {AttentionCase{1, 1, 4, 1, 128}, AttentionCase{3, 33, 6, 6, 64},
                                 AttentionCase{1, 16, 2, 1, 128}, AttentionCase{1, 17, 2, 1, 128},
                                 AttentionCase{2, 32, 3, 1, 96}, AttentionCase{1, 300, 8, 2, 128},
                                 AttentionCase{2, 129, 4, 4, 80}, AttentionCase{1, 65, 2, 2, 17},
                                 AttentionCase{1, 40, 2, 1, 2}, AttentionCase{1, 4096, 2, 1, 8}})
    attention.push_back(c);
  for (const AttentionCase& c : attention) t.push_back(std::make_unique<AttentionOpCase>(c));
  for (int64_t n : {1, 7, 1000, 100003, (1 << 20) + 3}) t.push_back(std::make_unique<SwigluCase>(n));
  // Hadamard rows: pure powers of two up to the CUDA kernel's 8192 segment,
  // m = 4 (Sylvester), 12 and 20 (Paley I) as real widths need (SmolLM2's
  // 1536 = 12 x 128), each forward and inverse, with and without signs.
  for (auto [rows, m, p] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 1, 1}, {3, 1, 2}, {4, 1, 64}, {2, 1, 8192}, {5, 4, 8}, {3, 12, 16}, {2, 20, 32}, {2, 12, 128}})
    for (int variant = 0; variant < 4; ++variant)
      t.push_back(std::make_unique<HadamardCase>(rows, m, p, variant & 1, variant & 2));
  for (int64_t n : {1, 7, 1000, (1 << 20) + 3}) t.push_back(std::make_unique<AddCase>(Op::AddInplace, 1, n));
  for (int64_t n : {1, 7, 1000, (1 << 20) + 3}) t.push_back(std::make_unique<AddCase>(Op::Subtract, 1, n));
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {5, 7}, {7, 33}, {257, 300}, {300, 4097}, {1, 5000}, {5000, 1}})
    t.push_back(std::make_unique<AddCase>(Op::AddBias, rows, cols));
  for (int64_t n : {0, 1, 10, 1000, (1 << 20) + 3}) t.push_back(std::make_unique<Bf16ToF32Case>(n));
  t.push_back(std::make_unique<SweepOpCase>(SweepPrecision::F32));
  t.push_back(std::make_unique<SweepOpCase>(SweepPrecision::F64));
  add_backward_cases(t);
  for (auto [m, n] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 9}, {9, 1}, {3, 7}, {7, 3}, {33, 33},
                                                              {64, 150}, {150, 64}, {200, 5}})
    t.push_back(std::make_unique<SvdCase>(m, n));
  // Per-row and grouped grids (a last group shorter than the rest), 2- to
  // 8-bit, both zero conventions; large enough for several GPU blocks and
  // CPU tasks.
  for (auto [rows, cols, group] : std::vector<std::array<int64_t, 3>>{
           {1, 1, 1}, {3, 8, 8}, {5, 37, 16}, {64, 150, 32}, {300, 577, 64}, {1, 70000, 70000}})
    for (int32_t maxq : {3, 15, 255})
      for (bool free_min : {false, true}) t.push_back(std::make_unique<FakeQuantSteCase>(rows, cols, group, maxq, free_min));
  for (int64_t n : {0, 1, 7, 1000, (1 << 20) + 3}) t.push_back(std::make_unique<SteMaskGradCase>(n));
  // Bands from LSI's diagonal to the widest (rank - 1); tall, square and
  // wide factors; cols not a multiple of the four partial sums.
  for (auto [rows, rank, band] : std::vector<std::array<int64_t, 3>>{
           {1, 1, 0}, {5, 3, 2}, {37, 23, 0}, {37, 23, 4}, {64, 64, 63}, {300, 200, 16}})
    t.push_back(std::make_unique<SdeBandedProductCase>(rows, rank, band));
  for (auto [rank, cols, band] : std::vector<std::array<int64_t, 3>>{
           {1, 1, 0}, {3, 5, 2}, {23, 37, 0}, {23, 37, 4}, {64, 64, 63}, {200, 301, 16}, {16, 4099, 3}})
    t.push_back(std::make_unique<SdeBandGradCase>(rank, cols, band));
  return t;
}

// Runs every case of `op` on every backend; prints one summary line per backend.
void run_op(Op op) {
  STREAMQ_SEEDED_RNG(rng);
  std::vector<std::unique_ptr<OpCase>> cases;
  for (auto& c : op_table())
    if (c->op() == op) cases.push_back(std::move(c));
  ASSERT_FALSE(cases.empty()) << op_name(op) << " has no row in the op table";
  for (auto& c : cases) c->prepare(rng);
  for (Backend* be : backends_under_test()) {
    if (!be->supports(op)) {
      std::printf("[backend-ops] %-5s %-24s UNSUPPORTED (%zu cases, each checked to throw)\n", be->name().c_str(),
                  op_name(op), cases.size());
      for (auto& c : cases)
        EXPECT_THROW(c->run(*be), InternalError) << be->name() << " claims not to support " << op_name(op)
                                                 << " but ran " << c->shape();
      continue;
    }
    double worst = 0;  // worst error / tolerance (errors at a zero tolerance count as infinite)
    for (auto& c : cases) {
      const Tolerance tol = c->tolerance();
      SCOPED_TRACE(be->name() + " " + op_name(op) + " " + c->shape());
      const Outcome o = c->run(*be);
      EXPECT_TRUE(o.defect.empty()) << o.defect;
      EXPECT_LE(o.error, tol.max_error) << "tolerance: " << tol.reason;
      const double ratio = o.error == 0 ? 0 : (tol.max_error > 0 ? o.error / tol.max_error : INFINITY);
      worst = std::isnan(ratio) ? INFINITY : std::max(worst, ratio);
    }
    std::printf("[backend-ops] %-5s %-24s %4zu cases, worst error %.3g of its tolerance\n", be->name().c_str(),
                op_name(op), cases.size(), worst);
  }
}

TEST(BackendOps, EveryOpHasRowsAndTheCpuSupportsEveryOp) {
  const auto table = op_table();
  for (Op op : kAllOps) {
    EXPECT_TRUE(std::any_of(table.begin(), table.end(), [&](const auto& c) { return c->op() == op; }))
        << op_name(op) << " has no row";
    EXPECT_TRUE(make_cpu_backend()->supports(op)) << "the CPU backend is the fallback: " << op_name(op);
  }
}

TEST(BackendOps, GemmF32) { run_op(Op::GemmF32); }
TEST(BackendOps, GemmF64) { run_op(Op::GemmF64); }
TEST(BackendOps, GramBf16) { run_op(Op::GramBf16); }
TEST(BackendOps, CholeskyLower) { run_op(Op::CholeskyLower); }
TEST(BackendOps, InvertLowerTriangular) { run_op(Op::InvertLowerTriangular); }
TEST(BackendOps, InverseUpperFactor) { run_op(Op::InverseUpperFactor); }
TEST(BackendOps, InverseUpperFactorF32) { run_op(Op::InverseUpperFactorF32); }
TEST(BackendOps, Rmsnorm) { run_op(Op::Rmsnorm); }
TEST(BackendOps, Rope) { run_op(Op::Rope); }
TEST(BackendOps, Attention) { run_op(Op::Attention); }
TEST(BackendOps, Swiglu) { run_op(Op::Swiglu); }
TEST(BackendOps, AddInplace) { run_op(Op::AddInplace); }
TEST(BackendOps, Subtract) { run_op(Op::Subtract); }
TEST(BackendOps, AddBias) { run_op(Op::AddBias); }
TEST(BackendOps, HadamardRows) { run_op(Op::HadamardRows); }
TEST(BackendOps, Bf16ToF32) { run_op(Op::Bf16ToF32); }
TEST(BackendOps, GptqSweep32) { run_op(Op::GptqSweep32); }
TEST(BackendOps, GptqSweep64) { run_op(Op::GptqSweep64); }
TEST(BackendOps, RmsnormBackward) { run_op(Op::RmsnormBackward); }
TEST(BackendOps, RopeBackward) { run_op(Op::RopeBackward); }
TEST(BackendOps, AttentionBackward) { run_op(Op::AttentionBackward); }
TEST(BackendOps, SwigluBackward) { run_op(Op::SwigluBackward); }
TEST(BackendOps, Svd) { run_op(Op::Svd); }
TEST(BackendOps, FakeQuantSte) { run_op(Op::FakeQuantSte); }
TEST(BackendOps, SteMaskGrad) { run_op(Op::SteMaskGrad); }
TEST(BackendOps, SdeBandedProduct) { run_op(Op::SdeBandedProduct); }
TEST(BackendOps, SdeBandGrad) { run_op(Op::SdeBandGrad); }

}  // namespace
}  // namespace streamq::test
