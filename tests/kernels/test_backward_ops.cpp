// The backward ops (rmsnorm_backward, rope_backward, attention_backward,
// swiglu_backward) on every backend against central finite differences of
// float64 forwards written here from the definitions (not the backends'
// code): L = sum_i g_i y_i(inputs) for a random g, so dL/d(input) is what
// the op returns for dout = g. Also: the results do not depend on the thread
// count. (The op table, test_backend_ops.cpp, holds the same ops to float64
// analytic gradients at many more shapes.)
#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/backends_under_test.h"
#include "tests/support/attention_backward_scalar.h"
#include "tests/support/attention_reference.h"
#include "tests/support/backend_test_util.h"
#include "tests/support/rope_reference.h"

namespace streamq::test {
namespace {

// A float32 analytic gradient against a float64 central difference, relative
// to the gradient's norm. The difference's own error is ~(h/x)^2 relative
// (h = 1e-5; inputs of size >= 0.01: <= 1e-6) plus eps64 |L| / h (~1e-10);
// the float32 gradient's is ~sqrt(terms) eps32 (~1e-6 at these sizes).
// 1e-4 leaves two orders of magnitude above both, and a wrong formula (a
// missing term, a transposed rotation) errs by O(1).
constexpr double kFdTolerance = 1e-4;
constexpr double kFdStep = 1e-5;

using Fn = std::function<double(const std::vector<double>&)>;

// dL/dx_i by (L(x + h e_i) - L(x - h e_i)) / 2h.
std::vector<double> central_difference(const Fn& loss, const std::vector<float>& x) {
  std::vector<double> xd(x.begin(), x.end()), grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = xd[i];
    xd[i] = keep + kFdStep;
    const double up = loss(xd);
    xd[i] = keep - kFdStep;
    const double down = loss(xd);
    xd[i] = keep;
    grad[i] = (up - down) / (2 * kFdStep);
  }
  return grad;
}

double dot(const std::vector<float>& g, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += g[i] * y[i];
  return s;
}

// Host vectors in and out of a backend's memory.
struct Dev {
  Backend& be;
  Buffer<float> put(const std::vector<float>& h) const { return be.upload_new(h, "backward test input"); }
  Buffer<float> out(size_t n) const {
    Buffer<float> b = be.alloc<float>(n, "backward test output");
    be.fill_bytes(b.data(), 0xff, b.bytes());  // NaN: an unwritten element fails
    return b;
  }
  std::vector<float> get(const Buffer<float>& b) const { return be.download_all(b); }
};

// Runs body on every backend that supports op; says which do not.
void on_backends(Op op, const std::function<void(Backend&)>& body) {
  for (Backend* be : backends_under_test()) {
    if (!be->supports(op)) {
      std::printf("[backward] %s does not support %s: skipped\n", be->name().c_str(), op_name(op));
      continue;
    }
    SCOPED_TRACE(be->name());
    body(*be);
  }
}

// ---- float64 forwards, from the definitions

std::vector<double> rmsnorm64(const std::vector<double>& x, const std::vector<float>& w, int64_t rows, int64_t dim,
                              double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double rms = std::sqrt(ss / double(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = x[r * dim + i] / rms * w[i];
  }
  return y;
}

TEST(BackwardOps, RmsnormBackwardIsTheGradientOfRmsnorm) {
  STREAMQ_SEEDED_RNG(rng);
  const int64_t rows = 3, dim = 7;
  const float eps = 1e-5f;
  std::vector<float> x = random_normal<float>(rng, rows * dim, 2.0);
  for (int64_t i = 0; i < dim; ++i) x[i] *= 0.01f;  // a row where eps matters
  const std::vector<float> w = random_normal<float>(rng, dim), g = random_normal<float>(rng, rows * dim);
  const std::vector<double> fd =
      central_difference([&](const std::vector<double>& xd) { return dot(g, rmsnorm64(xd, w, rows, dim, eps)); }, x);
  on_backends(Op::RmsnormBackward, [&](Backend& be) {
    const Dev dv{be};
    const Buffer<float> bx = dv.put(x), bw = dv.put(w), bg = dv.put(g), bdx = dv.out(x.size());
    be.rmsnorm_backward(bx.data(), bw.data(), bg.data(), bdx.data(), rows, dim, eps);
    EXPECT_LE(relative_error(dv.get(bdx), fd), kFdTolerance);
  });
}

TEST(BackwardOps, RopeBackwardIsTheGradientOfRope) {
  STREAMQ_SEEDED_RNG(rng);
  const int64_t nseq = 2, seqlen = 5, nheads = 3, hd = 8, half = hd / 2;
  const HfRopeTable table = hf_rope_table(seqlen + 2, hd);
  const std::vector<float>&cos = table.cos, &sin = table.sin;
  const std::vector<float> x = random_normal<float>(rng, nseq * seqlen * nheads * hd);
  const std::vector<float> g = random_normal<float>(rng, int64_t(x.size()));
  const std::vector<double> fd = central_difference(
      [&](const std::vector<double>& xd) { return dot(g, rope64(xd, cos, sin, nseq, seqlen, nheads, hd)); }, x);
  on_backends(Op::RopeBackward, [&](Backend& be) {
    const Dev dv{be};
    const Buffer<float> bc = dv.put(cos), bs = dv.put(sin), bd = dv.put(g);
    be.rope_backward(bd.data(), nseq, seqlen, nheads, hd, RopeTable{seqlen + 2, half, bc.data(), bs.data()});
    EXPECT_LE(relative_error(dv.get(bd), fd), kFdTolerance);
  });
}

TEST(BackwardOps, AttentionBackwardIsTheGradientOfAttention) {
  STREAMQ_SEEDED_RNG(rng);
  // GQA: 4 query heads on 2 kv heads, so dk and dv sum over two heads.
  const int64_t nseq = 2, seqlen = 5, nheads = 4, nkv = 2, hd = 4;
  const int64_t nq = nseq * seqlen * nheads * hd, nk = nseq * seqlen * nkv * hd;
  const std::vector<float> q = random_normal<float>(rng, nq), k = random_normal<float>(rng, nk),
                           v = random_normal<float>(rng, nk), g = random_normal<float>(rng, nq);
  const auto wide = [](const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); };
  const std::vector<double> fd_q = central_difference(
      [&](const std::vector<double>& qd) {
        return dot(g, attention64(qd, wide(k), wide(v), nseq, seqlen, nheads, nkv, hd));
      },
      q);
  const std::vector<double> fd_k = central_difference(
      [&](const std::vector<double>& kd) {
        return dot(g, attention64(wide(q), kd, wide(v), nseq, seqlen, nheads, nkv, hd));
      },
      k);
  const std::vector<double> fd_v = central_difference(
      [&](const std::vector<double>& vd) {
        return dot(g, attention64(wide(q), wide(k), vd, nseq, seqlen, nheads, nkv, hd));
      },
      v);
  on_backends(Op::AttentionBackward, [&](Backend& be) {
    const Dev dv{be};
    const Buffer<float> bq = dv.put(q), bk = dv.put(k), bv = dv.put(v), bg = dv.put(g);
    const Buffer<float> dq = dv.out(q.size()), dk = dv.out(k.size()), dvv = dv.out(v.size());
    be.attention_backward(bq.data(), bk.data(), bv.data(), bg.data(), dq.data(), dk.data(), dvv.data(), nseq, seqlen,
                          nheads, nkv, hd);
    EXPECT_LE(relative_error(dv.get(dq), fd_q), kFdTolerance) << "dq";
    EXPECT_LE(relative_error(dv.get(dk), fd_k), kFdTolerance) << "dk";
    EXPECT_LE(relative_error(dv.get(dvv), fd_v), kFdTolerance) << "dv";
  });
}

// The op's bits are those of the one-row-at-a-time loop on every backend:
// the CPU's two passes with keys as vector lanes and the CUDA twin both
// keep each element's order of rounded operations. Shapes: GQA groups of
// 1, 3 and 4, head_dim 1 to 96 (not multiples of a vector), sequences
// shorter than, equal to and past the passes' 32-row and 32-key tiles,
// several sequences, inputs of size 3 (softmax rows far from uniform).
TEST(BackwardOps, AttentionBackwardHasTheRowByRowLoopsBits) {
  STREAMQ_SEEDED_RNG(rng);
  for (const AttentionCase& c : {AttentionCase{1, 1, 2, 1, 8}, AttentionCase{2, 31, 3, 1, 5},
                                 AttentionCase{1, 32, 4, 4, 16}, AttentionCase{3, 70, 6, 2, 13},
                                 AttentionCase{1, 97, 9, 3, 64}, AttentionCase{2, 33, 4, 1, 1},
                                 AttentionCase{1, 65, 2, 2, 96}}) {
    SCOPED_TRACE(::testing::Message() << c);
    const size_t nq = static_cast<size_t>(c.nseq * c.seqlen * c.nheads * c.hd),
                 nk = static_cast<size_t>(c.nseq * c.seqlen * c.nkv * c.hd);
    const std::vector<float> q = random_normal<float>(rng, nq, 3.0), k = random_normal<float>(rng, nk, 3.0),
                             v = random_normal<float>(rng, nk), g = random_normal<float>(rng, nq);
    std::vector<float> want_q(nq), want_k(nk), want_v(nk);
    attention_backward_scalar(q.data(), k.data(), v.data(), g.data(), want_q.data(), want_k.data(), want_v.data(),
                              c.nseq, c.seqlen, c.nheads, c.nkv, c.hd);
    on_backends(Op::AttentionBackward, [&](Backend& be) {
      const Dev dv{be};
      const Buffer<float> bq = dv.put(q), bk = dv.put(k), bv = dv.put(v), bg = dv.put(g);
      const Buffer<float> dq = dv.out(nq), dk = dv.out(nk), dvv = dv.out(nk);
      be.attention_backward(bq.data(), bk.data(), bv.data(), bg.data(), dq.data(), dk.data(), dvv.data(), c.nseq,
                            c.seqlen, c.nheads, c.nkv, c.hd);
      EXPECT_TRUE(bitwise_equal(dv.get(dq), want_q)) << "dq";
      EXPECT_TRUE(bitwise_equal(dv.get(dk), want_k)) << "dk";
      EXPECT_TRUE(bitwise_equal(dv.get(dvv), want_v)) << "dv";
    });
  }
}

TEST(BackwardOps, SwigluBackwardIsTheGradientOfSwiglu) {
  STREAMQ_SEEDED_RNG(rng);
  const int64_t n = 50;
  const std::vector<float> gate = random_normal<float>(rng, n, 3.0), up = random_normal<float>(rng, n),
                           g = random_normal<float>(rng, n);
  const auto swiglu64 = [](const std::vector<double>& gd, const std::vector<double>& ud) {
    std::vector<double> y(gd.size());
    for (size_t i = 0; i < gd.size(); ++i) y[i] = gd[i] / (1.0 + std::exp(-gd[i])) * ud[i];
    return y;
  };
  const std::vector<double> upd(up.begin(), up.end()), gated(gate.begin(), gate.end());
  const std::vector<double> fd_gate =
      central_difference([&](const std::vector<double>& gd) { return dot(g, swiglu64(gd, upd)); }, gate);
  const std::vector<double> fd_up =
      central_difference([&](const std::vector<double>& ud) { return dot(g, swiglu64(gated, ud)); }, up);
  on_backends(Op::SwigluBackward, [&](Backend& be) {
    const Dev dv{be};
    const Buffer<float> bg = dv.put(gate), bu = dv.put(up), bd = dv.put(g), dg = dv.out(n), du = dv.out(n);
    be.swiglu_backward(bg.data(), bu.data(), bd.data(), dg.data(), du.data(), n);
    EXPECT_LE(relative_error(dv.get(dg), fd_gate), kFdTolerance) << "dgate";
    EXPECT_LE(relative_error(dv.get(du), fd_up), kFdTolerance) << "dup";
  });
}

// Every output element has one writer in a fixed order (attention: one task
// per (sequence, kv head)), so one thread and many give the same bits.
TEST(BackwardOps, ResultsDoNotDependOnTheThreadCount) {
  STREAMQ_SEEDED_RNG(rng);
  const int64_t nseq = 3, seqlen = 70, nheads = 8, nkv = 2, hd = 16, rows = nseq * seqlen;
  const std::vector<float> q = random_normal<float>(rng, rows * nheads * hd), k = random_normal<float>(rng, rows * nkv * hd),
                           v = random_normal<float>(rng, rows * nkv * hd), g = random_normal<float>(rng, rows * nheads * hd);
  const std::vector<float> w = random_normal<float>(rng, nheads * hd);
  on_backends(Op::AttentionBackward, [&](Backend& be) {
    const Dev dv{be};
    const Buffer<float> bq = dv.put(q), bk = dv.put(k), bv = dv.put(v), bg = dv.put(g), bw = dv.put(w);
    const auto run = [&] {
      const Buffer<float> dq = dv.out(q.size()), dk = dv.out(k.size()), dvv = dv.out(v.size()), dx = dv.out(q.size());
      be.attention_backward(bq.data(), bk.data(), bv.data(), bg.data(), dq.data(), dk.data(), dvv.data(), nseq, seqlen,
                            nheads, nkv, hd);
      be.rmsnorm_backward(bq.data(), bw.data(), bg.data(), dx.data(), rows, nheads * hd, 1e-6f);
      std::vector<float> all = dv.get(dq);
      for (const Buffer<float>* b : {&dk, &dvv, &dx}) {
        const std::vector<float> part = dv.get(*b);
        all.insert(all.end(), part.begin(), part.end());
      }
      return all;
    };
    std::vector<float> one;
    tbb::task_arena(1).execute([&] { one = run(); });
    EXPECT_TRUE(bitwise_equal(one, run()));
  });
}

}  // namespace
}  // namespace streamq::test
