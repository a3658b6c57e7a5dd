// The CUDA backward kernels (issue 18: rmsnorm, rope, attention, swiglu)
// against their CPU twins (kernels/cpu/*.cpp) on the same fresh random
// inputs, element by element, with guarded and poisoned outputs. The op table
// (test_backend_ops.cpp) holds both to the float64 analytic gradients; this
// measures how far the twins are apart, and prints it. The kernels repeat
// the twins' operations in their order, so on the CPU runtime (same libm
// expf) they are bit-identical, rmsnorm_backward excepted (its double row
// sums run in another order); on a GPU expf's rounding may differ.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cuda_raii.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "src/core/error.h"
#include "tests/gpu/gpu_test_util.h"

namespace streamq {
namespace {

using gpu_test::GuardedBuffer;
using gpu_test::upload;

constexpr double kF32Eps = std::numeric_limits<float>::epsilon();

#if defined(STREAMQ_CUDA_ON_CPU)
constexpr bool kSameExpf = true;  // the CPU runtime calls glibc's expf, as the twins
#else
constexpr bool kSameExpf = false;
#endif

// Where an op's arithmetic is the twin's but expf rounds differently (CUDA's
// within 2 ulp, glibc's within 1): the relative Frobenius distance between
// the two. 3 ulp of p (exp, then the float sum and division), carried into
// ds = p (dp - D) where dp - D partly cancels, and summed over keys: 32 eps.
constexpr double kExpfTwinTolerance = 32 * kF32Eps;
// rmsnorm_backward's double row sums in another order: a 1e-16 relative
// change moves a float rounding in about 2^-29 of elements, by one ulp.
constexpr uint32_t kRmsnormMaxUlp = 1;

std::vector<float> random_floats(std::mt19937_64& rng, size_t n, float sigma) {
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// Distance in units in the last place (same sign assumed; different signs
// count as the sum of both distances from zero).
uint32_t ulp_distance(float a, float b) {
  const auto key = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  const int64_t d = key(a) - key(b);
  return static_cast<uint32_t>(std::min<int64_t>(d < 0 ? -d : d, UINT32_MAX));
}

struct TwinDiff {
  size_t differing = 0, total = 0;
  uint32_t max_ulp = 0;
  double max_abs = 0, relative = 0;  // relative: ||got - want||_F / ||want||_F
};

TwinDiff compare(const std::vector<float>& got, const std::vector<float>& want) {
  TwinDiff d;
  d.total = want.size();
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) ++d.differing;
    d.max_ulp = std::max(d.max_ulp, ulp_distance(got[i], want[i]));
    const double diff = double(got[i]) - double(want[i]);
    d.max_abs = std::max(d.max_abs, std::abs(diff));
    num += diff * diff;
    den += double(want[i]) * want[i];
  }
  d.relative = den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
  return d;
}

void report(const std::string& what, const TwinDiff& d) {
  std::printf("[backward-twins] %-40s cuda vs cpu: %zu of %zu elements differ, max %u ulp, max |diff| %.3g, "
              "relative %.3g\n",
              what.c_str(), d.differing, d.total, d.max_ulp, d.max_abs, d.relative);
}

// Bit-identical where the twins share expf; otherwise within the expf bound.
void expect_twin(const std::string& what, const TwinDiff& d, bool uses_expf) {
  report(what, d);
  if (!uses_expf || kSameExpf) {
    EXPECT_EQ(d.differing, 0u) << what;
  } else {
    EXPECT_LE(d.relative, kExpfTwinTolerance) << what;
  }
}

TEST(CudaBackwardTwins, RmsnormBackward) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  CudaStream stream;
  for (auto [rows, dim] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {300, 64}, {17, 4097}, {2, 576}})
    for (float eps : {1e-5f, 1e-6f}) {
      const std::string what = "rmsnorm_backward rows=" + std::to_string(rows) + " dim=" + std::to_string(dim);
      std::vector<float> x = random_floats(rng, size_t(rows * dim), 3.0f);
      for (int64_t i = 0; i < dim; ++i) x[i] *= 1e-3f;  // a row near zero makes eps matter
      const std::vector<float> w = random_floats(rng, size_t(dim), 1.0f), dy = random_floats(rng, x.size(), 1.0f);
      std::vector<float> want(x.size());
      cpu::rmsnorm_backward(x.data(), w.data(), dy.data(), want.data(), rows, dim, eps);
      const DeviceBuffer<float> dx_in = upload(x, stream.get()), dw = upload(w, stream.get()),
                                ddy = upload(dy, stream.get());
      const GuardedBuffer<float> out(x.size(), stream.get());
      cuda_rmsnorm_backward(stream.get(), dx_in.get(), dw.get(), ddy.get(), out.get(), rows, dim, eps);
      const TwinDiff d = compare(out.download(stream.get(), what), want);
      report(what, d);
      EXPECT_LE(d.max_ulp, kRmsnormMaxUlp) << what;
    }
}

TEST(CudaBackwardTwins, RopeBackward) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  CudaStream stream;
  for (auto [nseq, seqlen, nheads, hd] : std::vector<std::array<int64_t, 4>>{{2, 5, 3, 8}, {1, 70, 2, 64}, {3, 33, 4, 6}}) {
    const std::string what = "rope_backward seqlen=" + std::to_string(seqlen) + " hd=" + std::to_string(hd);
    const int64_t half = hd / 2, max_pos = seqlen + 2;
    std::vector<float> cos, sin;
    for (int64_t p = 0; p < max_pos; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(p) * std::pow(10000.0, -2.0 * double(i) / double(hd));
        cos.push_back(float(std::cos(angle)));
        sin.push_back(float(std::sin(angle)));
      }
    const std::vector<float> d = random_floats(rng, size_t(nseq * seqlen * nheads * hd), 1.0f);
    std::vector<float> want = d;
    cpu::rope_backward(want.data(), nseq, seqlen, nheads, hd, RopeTable{max_pos, half, cos.data(), sin.data()});
    const DeviceBuffer<float> dc = upload(cos, stream.get()), ds = upload(sin, stream.get());
    const GuardedBuffer<float> got(d, stream.get());
    cuda_rope_backward(stream.get(), got.get(), nseq, seqlen, nheads, hd, RopeTable{max_pos, half, dc.get(), ds.get()});
    expect_twin(what, compare(got.download(stream.get(), what), want), false);
  }
}

TEST(CudaBackwardTwins, SwigluBackward) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  CudaStream stream;
  for (int64_t n : {7, 1000, 100003}) {
    const std::string what = "swiglu_backward n=" + std::to_string(n);
    std::vector<float> gate = random_floats(rng, size_t(n), 4.0f);
    gate[0] = -100.0f, gate[1] = 100.0f;  // exp(-g) overflow and saturation
    const std::vector<float> up = random_floats(rng, size_t(n), 1.0f), dout = random_floats(rng, size_t(n), 1.0f);
    std::vector<float> want_g(static_cast<size_t>(n)), want_u(static_cast<size_t>(n));
    cpu::swiglu_backward(gate.data(), up.data(), dout.data(), want_g.data(), want_u.data(), n);
    const DeviceBuffer<float> dg = upload(gate, stream.get()), du = upload(up, stream.get()),
                              dd = upload(dout, stream.get());
    const GuardedBuffer<float> og(static_cast<size_t>(n), stream.get()), ou(static_cast<size_t>(n), stream.get());
    cuda_swiglu_backward(stream.get(), dg.get(), du.get(), dd.get(), og.get(), ou.get(), n);
    expect_twin(what + " dgate", compare(og.download(stream.get(), what), want_g), true);
    expect_twin(what + " dup", compare(ou.download(stream.get(), what), want_u), true);
  }
}

// Shapes as the op table's: GQA groups of 1, 2, 4 and 8, head_dim 1 to the
// kernel's 128, sequences shorter and longer than a key tile (16) and a warp (32).
TEST(CudaBackwardTwins, AttentionBackward) {
  STREAMQ_GPU_SEEDED_RNG(rng);
  CudaStream stream;
  struct Shape {
    int64_t nseq, seqlen, nheads, nkv, hd;
  };
  for (const Shape& c : {Shape{1, 1, 4, 1, 8}, Shape{2, 5, 8, 4, 8}, Shape{2, 64, 8, 1, 64}, Shape{3, 65, 6, 2, 13},
                         Shape{1, 300, 4, 2, 128}, Shape{2, 33, 3, 3, 1}, Shape{1, 17, 2, 2, 96}}) {
    const std::string what = "attention_backward seqlen=" + std::to_string(c.seqlen) + " heads=" +
                             std::to_string(c.nheads) + "/" + std::to_string(c.nkv) + " hd=" + std::to_string(c.hd);
    const size_t nq = size_t(c.nseq * c.seqlen * c.nheads * c.hd), nk = size_t(c.nseq * c.seqlen * c.nkv * c.hd);
    const std::vector<float> q = random_floats(rng, nq, 1.0f), k = random_floats(rng, nk, 1.0f),
                             v = random_floats(rng, nk, 1.0f), dout = random_floats(rng, nq, 1.0f);
    std::vector<float> want_q(nq), want_k(nk), want_v(nk);
    cpu::attention_backward(q.data(), k.data(), v.data(), dout.data(), want_q.data(), want_k.data(), want_v.data(),
                            c.nseq, c.seqlen, c.nheads, c.nkv, c.hd);
    const DeviceBuffer<float> dq_in = upload(q, stream.get()), dk_in = upload(k, stream.get()),
                              dv_in = upload(v, stream.get()), ddo = upload(dout, stream.get());
    const DeviceBuffer<unsigned char> ws(
        std::max<size_t>(1, cuda_attention_backward_workspace_bytes(c.nseq, c.seqlen, c.nheads)));
    std::vector<float> first_q, first_k, first_v;
    for (int run = 0; run < 2; ++run) {  // twice: the same bits (no scheduling-dependent sums)
      const GuardedBuffer<float> oq(nq, stream.get()), ok(nk, stream.get()), ov(nk, stream.get());
      cuda_attention_backward(stream.get(), dq_in.get(), dk_in.get(), dv_in.get(), ddo.get(), oq.get(), ok.get(),
                              ov.get(), ws.get(), c.nseq, c.seqlen, c.nheads, c.nkv, c.hd);
      const std::vector<float> gq = oq.download(stream.get(), what + " dq"), gk = ok.download(stream.get(), what + " dk"),
                               gv = ov.download(stream.get(), what + " dv");
      if (run == 0) {
        expect_twin(what + " dq", compare(gq, want_q), true);
        expect_twin(what + " dk", compare(gk, want_k), true);
        expect_twin(what + " dv", compare(gv, want_v), true);
        first_q = gq, first_k = gk, first_v = gv;
      } else {
        EXPECT_EQ(compare(gq, first_q).differing + compare(gk, first_k).differing + compare(gv, first_v).differing, 0u)
            << what << ": a second run differs";
      }
    }
  }
}

TEST(CudaBackwardTwins, AttentionBackwardRefusesWhatItCannotDo) {
  CudaStream stream;
  EXPECT_THROW(cuda_attention_backward(stream.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                       nullptr, 1, 4, 4, 1, 256),
               InternalError)
      << "head_dim beyond kCudaAttentionMaxHeadDim";
  EXPECT_THROW(cuda_attention_backward(stream.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                       nullptr, 1, 4, 3, 2, 8),
               InternalError)
      << "nheads not a multiple of nkv";
  // Nothing to do: no launch, no workspace needed.
  cuda_attention_backward(stream.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4,
                          4, 1, 8);
}

}  // namespace
}  // namespace streamq
