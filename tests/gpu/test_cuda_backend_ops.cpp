// The CUDA backend's row-wise and elementwise ops (rmsnorm, rope, swiglu,
// add_inplace, add_bias) against the CPU backend on fresh random inputs of
// odd shapes, with guarded, poisoned outputs, the aliasing the interface
// allows, and the CPU's argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/support/backend_test_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace streamq::gpu_test {
namespace {

using test::kF32Eps;
using test::relative_error;

// rmsnorm: both sum the squares in double and round 1/rms once to float, then
// do the same two float products; only the double sum's order differs, which
// can move 1/rms by 1 ulp in a rare row (<= eps relative there).
constexpr double kRmsnormTol = 2 * kF32Eps;
// rope: the same two products and one sum, unfused on both sides (bit-equal
// as built today); 4 eps allows a CPU build that contracts to FMA, whose
// error per element is <= 2 ulp of |x| for a norm-preserving rotation.
constexpr double kRopeTol = 4 * kF32Eps;
// swiglu: identical float ops but expf (CUDA <= 2 ulp, glibc <= 1 ulp).
constexpr double kSwigluTol = 8 * kF32Eps;

struct Fixture {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  DevicePool pool{DevicePool::default_limit()};
  std::unique_ptr<CudaBackend> gpu = make_cuda_backend(pool);
  cudaStream_t s() const { return gpu->stream(); }
};

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

TEST(CudaBackendOps, RmsnormMatchesCpuAndMayAlias) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  struct Shape { int64_t rows, dim; };
  for (const Shape sh : {Shape{1, 1}, Shape{1, 7}, Shape{3, 64}, Shape{2, 33}, Shape{17, 4096},
                         Shape{300, 4097}, Shape{70000, 3}}) {
    for (float eps : {1e-5f, 1e-6f}) {
      SCOPED_TRACE(testing::Message() << "rows=" << sh.rows << " dim=" << sh.dim << " eps=" << eps);
      const int64_t n = sh.rows * sh.dim;
      // Scaled rows: one row near zero makes eps matter.
      std::vector<float> x = test::random_normal<float>(rng, n, 3.0);
      for (int64_t i = 0; i < sh.dim; ++i) x[i] *= 1e-3f;
      const std::vector<float> w = test::random_normal<float>(rng, sh.dim);
      std::vector<float> want = test::poisoned<float>(n);
      f.cpu->rmsnorm(x.data(), w.data(), want.data(), sh.rows, sh.dim, eps);

      const GuardedBuffer<float> d_x(x, f.s()), d_w(w, f.s());
      GuardedBuffer<float> d_y(n, f.s());
      f.gpu->rmsnorm(d_x.get(), d_w.get(), d_y.get(), sh.rows, sh.dim, eps);
      const std::vector<float> got = d_y.download(f.s(), "rmsnorm y");
      EXPECT_LE(relative_error(got, widen(want)), kRmsnormTol);
      EXPECT_EQ(d_x.download(f.s(), "rmsnorm x"), x) << "input modified";

      GuardedBuffer<float> d_xy(x, f.s());  // y aliasing x: same bits
      f.gpu->rmsnorm(d_xy.get(), d_w.get(), d_xy.get(), sh.rows, sh.dim, eps);
      EXPECT_TRUE(test::bitwise_equal(d_xy.download(f.s(), "rmsnorm in place"), got));
    }
  }
}

// cos/sin of HF's default inverse frequencies, theta = 10000.
std::vector<float> rope_table(int64_t max_pos, int64_t half, bool sine) {
  std::vector<float> t(max_pos * half);
  for (int64_t p = 0; p < max_pos; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(p) * std::pow(10000.0, -double(2 * i) / double(2 * half));
      t[p * half + i] = static_cast<float>(sine ? std::sin(angle) : std::cos(angle));
    }
  return t;
}

TEST(CudaBackendOps, RopeMatchesCpu) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  struct Shape { int64_t nseq, seqlen, nheads, head_dim; };
  for (const Shape sh : {Shape{1, 1, 1, 2}, Shape{1, 7, 5, 64}, Shape{3, 300, 4, 128},
                         Shape{2, 33, 3, 6}, Shape{1, 4096, 2, 128}}) {
    SCOPED_TRACE(testing::Message() << "nseq=" << sh.nseq << " seqlen=" << sh.seqlen
                                    << " nheads=" << sh.nheads << " head_dim=" << sh.head_dim);
    const int64_t half = sh.head_dim / 2, max_pos = sh.seqlen + 5;
    const std::vector<float> cos_t = rope_table(max_pos, half, false);
    const std::vector<float> sin_t = rope_table(max_pos, half, true);
    const int64_t n = sh.nseq * sh.seqlen * sh.nheads * sh.head_dim;
    const std::vector<float> x = test::random_normal<float>(rng, n);
    std::vector<float> want = x;
    f.cpu->rope(want.data(), sh.nseq, sh.seqlen, sh.nheads, sh.head_dim,
                RopeTable{max_pos, half, cos_t.data(), sin_t.data()});

    const GuardedBuffer<float> d_cos(cos_t, f.s()), d_sin(sin_t, f.s());
    GuardedBuffer<float> d_x(x, f.s());
    f.gpu->rope(d_x.get(), sh.nseq, sh.seqlen, sh.nheads, sh.head_dim,
                RopeTable{max_pos, half, d_cos.get(), d_sin.get()});
    EXPECT_LE(relative_error(d_x.download(f.s(), "rope x"), widen(want)), kRopeTol);
  }
  // The CPU's argument errors: odd head_dim, a table too short or mismatched.
  const std::vector<float> c = rope_table(4, 2, false);
  const GuardedBuffer<float> d_c(c, f.s());
  GuardedBuffer<float> d_x(64, f.s());
  EXPECT_THROW(f.gpu->rope(d_x.get(), 1, 4, 1, 5, RopeTable{4, 2, d_c.get(), d_c.get()}),
               InternalError);
  EXPECT_THROW(f.gpu->rope(d_x.get(), 1, 5, 1, 4, RopeTable{4, 2, d_c.get(), d_c.get()}),
               InternalError);
  EXPECT_THROW(f.gpu->rope(d_x.get(), 1, 4, 1, 6, RopeTable{4, 2, d_c.get(), d_c.get()}),
               InternalError);
  EXPECT_THROW(f.gpu->rope(d_x.get(), 1, 4, 1, 4, RopeTable{4, 2, nullptr, nullptr}),
               InternalError);
  f.gpu->synchronize();
}

TEST(CudaBackendOps, SwigluMatchesCpuAndMayAlias) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  for (int64_t n : {1, 10, 1000, (1 << 20) + 3}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<float> gate = test::random_normal<float>(rng, n, 4.0);
    const std::vector<float> up = test::random_normal<float>(rng, n);
    std::vector<float> want = test::poisoned<float>(n);
    f.cpu->swiglu(gate.data(), up.data(), want.data(), n);
    const GuardedBuffer<float> d_gate(gate, f.s());
    GuardedBuffer<float> d_up(up, f.s()), d_out(n, f.s());
    f.gpu->swiglu(d_gate.get(), d_up.get(), d_out.get(), n);
    const std::vector<float> got = d_out.download(f.s(), "swiglu out");
    EXPECT_LE(relative_error(got, widen(want)), kSwigluTol);
    f.gpu->swiglu(d_gate.get(), d_up.get(), d_up.get(), n);  // out aliasing up
    EXPECT_TRUE(test::bitwise_equal(d_up.download(f.s(), "swiglu in place"), got));
  }
}

// One float add per element on both sides: bit-identical.
TEST(CudaBackendOps, AddInplaceIsBitIdenticalToCpu) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  for (int64_t n : {1, 7, 1000, (1 << 20) + 3}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    const std::vector<float> y = test::random_normal<float>(rng, n);
    const std::vector<float> x = test::random_normal<float>(rng, n);
    std::vector<float> want = y;
    f.cpu->add_inplace(want.data(), x.data(), n);
    GuardedBuffer<float> d_y(y, f.s());
    const GuardedBuffer<float> d_x(x, f.s());
    f.gpu->add_inplace(d_y.get(), d_x.get(), n);
    EXPECT_TRUE(test::bitwise_equal(d_y.download(f.s(), "add_inplace y"), want));
  }
  f.gpu->add_inplace(nullptr, nullptr, 0);
  EXPECT_THROW(f.gpu->add_inplace(nullptr, nullptr, -1), InternalError);
  f.gpu->synchronize();
}

TEST(CudaBackendOps, AddBiasIsBitIdenticalToCpu) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  struct Shape { int64_t rows, cols; };
  for (const Shape sh : {Shape{1, 1}, Shape{7, 33}, Shape{300, 4097}, Shape{1, 5000},
                         Shape{5000, 1}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << sh.rows << " cols=" << sh.cols);
    const std::vector<float> y = test::random_normal<float>(rng, sh.rows * sh.cols);
    const std::vector<float> bias = test::random_normal<float>(rng, sh.cols);
    std::vector<float> want = y;
    f.cpu->add_bias(want.data(), bias.data(), sh.rows, sh.cols);
    GuardedBuffer<float> d_y(y, f.s());
    const GuardedBuffer<float> d_b(bias, f.s());
    f.gpu->add_bias(d_y.get(), d_b.get(), sh.rows, sh.cols);
    EXPECT_TRUE(test::bitwise_equal(d_y.download(f.s(), "add_bias y"), want));
  }
  EXPECT_THROW(f.gpu->add_bias(nullptr, nullptr, 2, -1), InternalError);
  f.gpu->synchronize();
}

}  // namespace
}  // namespace streamq::gpu_test
