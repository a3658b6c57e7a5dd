// The CUDA backend's flash-style causal GQA attention against the CPU backend
// and a float64 reference: odd sequence lengths (1, tile edges, 300+, 4096),
// head_dim 64 and 128 and odd ones, nkv < nheads, several sequences; guarded
// poisoned outputs; non-finite values of a later token must not leak into
// earlier rows; repeated runs are bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cuda_backend.h"
#include "tests/support/attention_reference.h"
#include "tests/support/backend_test_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace streamq::gpu_test {
namespace {

using test::kF32Eps;

// Error normalized by sum_j p_j |v_j| (outputs average random-sign values and
// may cancel). Each side's float rounding (hd-term dot products, a seqlen-term
// normalizer, seqlen-term weighted sums, and on the GPU one rescale per key
// tile) grows like the square root of the term count: the CPU test bounds it
// by 4 sqrt(hd + seqlen) eps against float64. The GPU's online softmax adds
// expf's 2 ulp per weight and the rescales, which stay within 2x that bound;
// about 1.5e-5 at hd 128, seqlen 300, and 4e-5 at seqlen 4096.
double attention_tolerance(int64_t head_dim, int64_t seqlen) {
  return 8.0 * std::sqrt(double(head_dim + seqlen)) * kF32Eps;
}
// GPU vs CPU: each within the bound of float64, so at most twice apart.
double gpu_vs_cpu_tolerance(int64_t head_dim, int64_t seqlen) {
  return 2.0 * attention_tolerance(head_dim, seqlen);
}

using test::AttentionCase;
using test::AttentionInputs;
using test::reference_attention;

std::vector<float> run_gpu(CudaBackend& gpu, const AttentionInputs& in, const AttentionCase& c) {
  cudaStream_t s = gpu.stream();
  const GuardedBuffer<float> q(in.q, s), k(in.k, s), v(in.v, s);
  GuardedBuffer<float> out(in.q.size(), s);
  gpu.attention(q.get(), k.get(), v.get(), out.get(), c.nseq, c.seqlen, c.nheads, c.nkv, c.hd);
  return out.download(s, "attention out");
}

std::vector<float> run_cpu(Backend& cpu, const AttentionInputs& in, const AttentionCase& c) {
  std::vector<float> out = test::poisoned<float>(static_cast<int64_t>(in.q.size()));
  cpu.attention(in.q.data(), in.k.data(), in.v.data(), out.data(), c.nseq, c.seqlen, c.nheads,
                c.nkv, c.hd);
  return out;
}

struct Fixture {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  DevicePool pool{DevicePool::default_limit()};
  std::unique_ptr<CudaBackend> gpu = make_cuda_backend(pool);
};

void check_case(std::mt19937_64& rng, Fixture& f, const AttentionCase& c) {
  SCOPED_TRACE(testing::Message() << c);
  const AttentionInputs in(rng, c);
  std::vector<double> ref, mag;
  reference_attention(in, c, ref, mag);
  const std::vector<float> want = run_cpu(*f.cpu, in, c);
  const std::vector<float> got = run_gpu(*f.gpu, in, c);
  const int64_t n = static_cast<int64_t>(ref.size());
  const std::vector<double> cpu_ref(want.begin(), want.end());
  EXPECT_LE(test::relative_error(got.data(), ref.data(), mag.data(), n),
            attention_tolerance(c.hd, c.seqlen))
      << "GPU vs float64";
  EXPECT_LE(test::relative_error(got.data(), cpu_ref.data(), mag.data(), n),
            gpu_vs_cpu_tolerance(c.hd, c.seqlen))
      << "GPU vs CPU backend";
}

TEST(CudaBackendAttention, MatchesCpuOnOddShapes) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  for (const AttentionCase& c : {
           AttentionCase{1, 1, 1, 1, 64},     // one token: out = v
           AttentionCase{1, 1, 4, 1, 128},
           AttentionCase{2, 7, 4, 2, 64},     // nkv < nheads
           AttentionCase{3, 33, 6, 6, 64},    // plain MHA, a key tile + 1
           AttentionCase{1, 16, 2, 1, 128},   // exactly one query tile
           AttentionCase{1, 17, 2, 1, 128},   // one query tile + 1
           AttentionCase{2, 32, 3, 1, 96},
           AttentionCase{1, 300, 8, 2, 128},
           AttentionCase{2, 129, 4, 4, 80},   // head_dim not a multiple of 32
           AttentionCase{1, 65, 2, 2, 17},    // odd head_dim
           AttentionCase{1, 40, 2, 1, 2},     // smallest even head_dim
       })
    check_case(rng, f, c);
}

TEST(CudaBackendAttention, MatchesCpuAtSeqlen4096) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  check_case(rng, f, AttentionCase{1, 4096, 2, 1, 128});
}

TEST(CudaBackendAttention, LaterTokensNeverReachEarlierRows) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  const AttentionCase c{2, 70, 4, 2, 64};
  AttentionInputs in(rng, c);
  // The last token of sequence 0 gets an infinite key and a NaN value: only
  // that row (of every head) may turn non-finite; sequence 1 is untouched.
  const int64_t kw = c.nkv * c.hd, qw = c.nheads * c.hd, last = c.seqlen - 1;
  for (int64_t i = 0; i < kw; ++i) {
    in.k[last * kw + i] = std::numeric_limits<float>::infinity();
    in.v[last * kw + i] = std::numeric_limits<float>::quiet_NaN();
  }
  const std::vector<float> want = run_cpu(*f.cpu, in, c);
  const std::vector<float> got = run_gpu(*f.gpu, in, c);
  for (int64_t row = 0; row < c.nseq * c.seqlen; ++row) {
    const bool poisoned_row = row == last;
    for (int64_t i = 0; i < qw; ++i) {
      const float g = got[row * qw + i], w = want[row * qw + i];
      if (poisoned_row) {
        ASSERT_TRUE(std::isnan(g)) << "row " << row << " col " << i << ": " << g;
        ASSERT_TRUE(std::isnan(w)) << "CPU row " << row << " col " << i << ": " << w;
      } else {
        ASSERT_TRUE(std::isfinite(g)) << "row " << row << " col " << i << " saw a later token";
        ASSERT_NEAR(g, w, 1e-4) << "row " << row << " col " << i;
      }
    }
  }
}

TEST(CudaBackendAttention, RepeatedRunsAreBitIdentical) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  Fixture f;
  const AttentionCase c{2, 300, 8, 2, 128};
  const AttentionInputs in(rng, c);
  const std::vector<float> a = run_gpu(*f.gpu, in, c);
  const std::vector<float> b = run_gpu(*f.gpu, in, c);
  EXPECT_TRUE(test::bitwise_equal(a, b));
}

TEST(CudaBackendAttention, RejectsWhatTheKernelCannotDo) {
  Fixture f;
  // Not a GQA grouping, and head_dim past the register accumulators.
  EXPECT_THROW(f.gpu->attention(nullptr, nullptr, nullptr, nullptr, 1, 4, 6, 4, 64),
               InternalError);
  EXPECT_THROW(f.gpu->attention(nullptr, nullptr, nullptr, nullptr, 1, 4, 2, 1,
                                kCudaAttentionMaxHeadDim + 2),
               InternalError);
  EXPECT_THROW(f.gpu->attention(nullptr, nullptr, nullptr, nullptr, 1, 4, 2, 0, 64),
               InternalError);
  // Empty problems launch nothing.
  f.gpu->attention(nullptr, nullptr, nullptr, nullptr, 0, 4, 2, 1, 64);
  f.gpu->attention(nullptr, nullptr, nullptr, nullptr, 1, 0, 2, 1, 64);
  f.gpu->synchronize();
}

}  // namespace
}  // namespace streamq::gpu_test
