// block_backward (src/model/block_backward.h) against central finite
// differences of a float64 decoder block written plainly here (loops from
// the definitions, not the backend's ops): dL/d(input) and every linear's
// dL/dW for L = sum g * block(x), on a tiny GQA config, plain and with biases
// and QK-norm, and with the online Hadamard. Also: block_forward_tape's output is block_forward's bit for
// bit, and the emulated device's backward is the CPU's (it runs the CPU
// kernels: bit for bit), with float32 and bf16-held weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#include "src/core/dtype.h"
#include "src/model/block_backward.h"
#include "src/model/config.h"
#include "src/model/model.h"
#include "src/model/resident_block.h"
#include "tests/support/attention_reference.h"
#include "tests/support/backend_test_util.h"
#include "tests/support/rope_reference.h"

namespace streamq::test {
namespace {

// A float32 gradient against a float64 central difference, relative to the
// gradient's norm (per tensor). The difference errs by ~(h/x)^2 (h = 1e-5 on
// O(0.1..1) values: <= 1e-8) plus eps64 |L| / h (~1e-10); the float32
// backward by ~sqrt(terms) eps32 per op over a dozen ops, the rms norms' 1/rms
// amplifying (seen: 2e-7..2e-6). 1e-4 leaves 50x above that, while a missing
// or transposed term errs by O(1).
constexpr double kBlockFdTolerance = 1e-4;
constexpr double kFdStep = 1e-5;

const char* const kLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

ModelConfig tiny_config(bool biases_and_qk_norm) {
  ModelConfig c;
  c.arch = biases_and_qk_norm ? Architecture::Qwen3 : Architecture::Llama;
  c.hidden = 16;
  c.intermediate = 24;
  c.layers = 1;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 4;
  c.vocab = 32;
  c.max_pos = 64;
  c.rms_eps = 1e-5;
  c.attention_bias = c.o_bias = c.mlp_bias = biases_and_qk_norm;
  c.qk_norm = biases_and_qk_norm;
  return c;
}

// [out, in] of each linear.
std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, const std::string& name) {
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  if (name == "self_attn.q_proj") return {q, c.hidden};
  if (name == "self_attn.k_proj" || name == "self_attn.v_proj") return {kv, c.hidden};
  if (name == "self_attn.o_proj") return {c.hidden, q};
  if (name == "mlp.down_proj") return {c.hidden, c.intermediate};
  return {c.intermediate, c.hidden};
}

BlockWeights random_block(std::mt19937_64& rng, const ModelConfig& c) {
  BlockWeights w;
  std::normal_distribution<double> normal;
  const auto norm_weight = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = static_cast<float>(1.0 + 0.2 * normal(rng));
    return v;
  };
  w.input_norm = norm_weight(c.hidden);
  w.post_norm = norm_weight(c.hidden);
  if (c.qk_norm) {
    w.q_norm = norm_weight(c.head_dim);
    w.k_norm = norm_weight(c.head_dim);
  }
  for (const char* name : kLinears) {
    const auto [out, in] = linear_shape(c, name);
    Linear& l = w.linears[name];
    l.w = random_normal<float>(rng, out * in, 1.0 / std::sqrt(double(in)));
    const bool bias = std::string(name).starts_with("mlp.") ? c.mlp_bias
                      : std::string(name) == "self_attn.o_proj" ? c.o_bias
                                                                 : c.attention_bias;
    if (bias) l.b = random_normal<float>(rng, out, 0.1);
  }
  return w;
}

// ---- the float64 block, from the definitions

using Vec = std::vector<double>;

struct RefBlock {
  const ModelConfig& c;
  const std::vector<float>& cos;  // [max_pos, head_dim/2]
  const std::vector<float>& sin;
  Vec input_norm, post_norm, q_norm, k_norm;
  std::map<std::string, Vec> w, b;
  std::vector<float> hm;    // QuaRot's online Hadamard's H_m ([m, m]) before down_proj; empty: off
  std::vector<float> o_hm;  // the same before o_proj (of heads * head_dim); empty: off

  RefBlock(const ModelConfig& cfg, const BlockWeights& bw, const std::vector<float>& co, const std::vector<float>& si)
      : c(cfg), cos(co), sin(si) {
    const auto wide = [](const std::vector<float>& f) { return Vec(f.begin(), f.end()); };
    input_norm = wide(bw.input_norm);
    post_norm = wide(bw.post_norm);
    q_norm = wide(bw.q_norm);
    k_norm = wide(bw.k_norm);
    for (const auto& [name, l] : bw.linears) {
      w[name] = wide(l.w);
      b[name] = wide(l.b);
    }
  }

  Vec rmsnorm(const Vec& x, const Vec& g, int64_t dim) const {
    Vec y(x.size());
    for (size_t r = 0; r < x.size() / dim; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
      const double inv = 1.0 / std::sqrt(ss / double(dim) + c.rms_eps);
      for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = x[r * dim + i] * inv * g[i];
    }
    return y;
  }
  // y[t, out] = x[t, in] W^T + b.
  Vec linear(const std::string& name, const Vec& x) const {
    const auto [out, in] = linear_shape(c, name);
    const Vec& wt = w.at(name);
    const Vec& bias = b.at(name);
    const int64_t t = static_cast<int64_t>(x.size()) / in;
    Vec y(static_cast<size_t>(t * out));
    for (int64_t r = 0; r < t; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double s = bias.empty() ? 0.0 : bias[o];
        for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * wt[o * in + i];
        y[r * out + o] = s;
      }
    return y;
  }
  void rope(Vec& x, int64_t seqlen, int64_t nheads) const {
    const int64_t rows = static_cast<int64_t>(x.size()) / (nheads * c.head_dim);
    x = rope64(x, cos, sin, rows / seqlen, seqlen, nheads, c.head_dim);
  }
  Vec attention(const Vec& q, const Vec& k, const Vec& v, int64_t nseq, int64_t seqlen) const {
    return attention64(q, k, v, nseq, seqlen, c.heads, c.kv_heads, c.head_dim);
  }
  // Each row of a[rows, n] times H_n^T / sqrt(n), H_n = H_m (x) H_p (Sylvester
  // H_p, p = n / m) as dense entries: H_n[i][j] = H_m[i / p][j / p] H_p[i % p][j % p].
  static Vec online_hadamard(const Vec& a, int64_t n, const std::vector<float>& hm) {
    const int64_t m = static_cast<int64_t>(std::lround(std::sqrt(double(hm.size())))), p = n / m;
    Vec y(a.size(), 0.0);
    for (size_t r = 0; r < a.size() / n; ++r)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const double hp = (__builtin_popcountll(static_cast<uint64_t>((i % p) & (j % p))) & 1) ? -1.0 : 1.0;
          y[r * n + i] += hm[(i / p) * m + j / p] * hp * a[r * n + j] / std::sqrt(double(n));
        }
    return y;
  }
  Vec forward(const Vec& x, int64_t nseq, int64_t seqlen) const {
    const Vec h = rmsnorm(x, input_norm, c.hidden);
    Vec q = linear("self_attn.q_proj", h), k = linear("self_attn.k_proj", h);
    const Vec v = linear("self_attn.v_proj", h);
    if (c.qk_norm) {
      q = rmsnorm(q, q_norm, c.head_dim);
      k = rmsnorm(k, k_norm, c.head_dim);
    }
    rope(q, seqlen, c.heads);
    rope(k, seqlen, c.kv_heads);
    Vec attn = attention(q, k, v, nseq, seqlen);
    if (!o_hm.empty()) attn = online_hadamard(attn, c.heads * c.head_dim, o_hm);
    const Vec o = linear("self_attn.o_proj", attn);
    Vec mid = x;
    for (size_t i = 0; i < mid.size(); ++i) mid[i] += o[i];
    const Vec h2 = rmsnorm(mid, post_norm, c.hidden);
    Vec gate = linear("mlp.gate_proj", h2);
    const Vec up = linear("mlp.up_proj", h2);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    if (!hm.empty()) gate = online_hadamard(gate, c.intermediate, hm);
    const Vec down = linear("mlp.down_proj", gate);
    for (size_t i = 0; i < mid.size(); ++i) mid[i] += down[i];
    return mid;
  }
};

double dot(const std::vector<float>& g, const Vec& y) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += g[i] * y[i];
  return s;
}

// Central differences of loss over every element of v (changed and restored).
template <typename Loss>
Vec central_difference(Vec& v, const Loss& loss) {
  Vec grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + kFdStep;
    const double up = loss();
    v[i] = keep - kFdStep;
    const double down = loss();
    v[i] = keep;
    grad[i] = (up - down) / (2 * kFdStep);
  }
  return grad;
}

// Paley I's Hadamard matrix of order q + 1 (q a prime = 3 mod 4: 3 -> 4,
// 11 -> 12), as +-1 floats: H = I + S, S = [[0, 1^T], [-1, Q]], Q[i][j] =
// chi(j - i) (quadratic character mod q). Not symmetric, so a transposed use
// of it shows.
std::vector<float> paley(int64_t q) {
  const int64_t m = q + 1;
  const auto chi = [&](int64_t v) {
    v = ((v % q) + q) % q;
    if (v == 0) return 0;
    for (int64_t y = 1; y < q; ++y)
      if ((y * y) % q == v) return 1;
    return -1;
  };
  std::vector<float> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      const int s = i == 0 && j > 0 ? 1 : j == 0 && i > 0 ? -1 : i > 0 && j > 0 ? chi(j - i) : 0;
      h[i * m + j] = static_cast<float>((i == j ? 1 : 0) + s);
    }
  return h;
}

struct Problem {
  ModelConfig c;
  int64_t nseq = 2, seqlen = 5;
  BlockWeights w;
  std::vector<float> cos, sin, x, g;
  // QuaRot's online Hadamards when on: [12, 12] before down_proj (24 = 12 x 2),
  // [4, 4] before o_proj (heads * head_dim 16 = 4 x 4).
  std::vector<float> online_hm, o_proj_hm;
  BlockView view() const {
    BlockView v = host_view(w);
    if (!online_hm.empty()) v.online_hm = online_hm.data(), v.online_m = 12;
    if (!o_proj_hm.empty()) v.o_proj_hm = o_proj_hm.data(), v.o_proj_m = 4;
    return v;
  }
  int64_t tokens() const { return nseq * seqlen; }
  RopeTable host_rope() const { return {c.max_pos, c.head_dim / 2, cos.data(), sin.data()}; }
};

Problem make_problem(std::mt19937_64& rng, bool biases_and_qk_norm, bool online_hadamard = false) {
  Problem p;
  if (online_hadamard) p.online_hm = paley(11), p.o_proj_hm = paley(3);
  p.c = tiny_config(biases_and_qk_norm);
  p.w = random_block(rng, p.c);
  build_rope_tables(p.c, p.c.max_pos, &p.cos, &p.sin);
  p.x = random_normal<float>(rng, p.tokens() * p.c.hidden);
  p.g = random_normal<float>(rng, p.tokens() * p.c.hidden);
  return p;
}

struct Grads {
  std::vector<float> dx;
  std::map<std::string, std::vector<float>> dw;
};

// The CPU backend's backward on host arrays.
Grads cpu_backward(const Problem& p, std::vector<float>* out = nullptr) {
  auto be = make_cpu_backend();
  const BlockView view = p.view();
  std::vector<float> x = p.x;
  BlockTape tape;
  block_forward_tape(*be, p.c, view, p.host_rope(), x.data(), p.nseq, p.seqlen, &tape);
  if (out) *out = x;
  Grads gr;
  gr.dx = p.g;
  std::map<std::string, float*> dw;
  for (const char* name : kLinears) {
    gr.dw[name].assign(p.w.linears.at(name).w.size(), NAN);
    dw[name] = gr.dw[name].data();
  }
  block_backward(*be, p.c, view, p.host_rope(), tape, gr.dx.data(), &dw);
  return gr;
}

void check_against_finite_differences(bool biases_and_qk_norm, bool online_hadamard = false) {
  STREAMQ_SEEDED_RNG(rng);
  const Problem p = make_problem(rng, biases_and_qk_norm, online_hadamard);
  const Grads got = cpu_backward(p);
  RefBlock ref(p.c, p.w, p.cos, p.sin);
  ref.hm = p.online_hm;
  ref.o_hm = p.o_proj_hm;
  Vec x(p.x.begin(), p.x.end());
  const auto loss = [&] { return dot(p.g, ref.forward(x, p.nseq, p.seqlen)); };
  double worst = relative_error(got.dx, central_difference(x, loss));
  EXPECT_LE(worst, kBlockFdTolerance) << "dL/dx";
  for (const char* name : kLinears) {
    const double e = relative_error(got.dw.at(name), central_difference(ref.w.at(name), loss));
    EXPECT_LE(e, kBlockFdTolerance) << "dL/dW of " << name;
    worst = std::max(worst, e);
  }
  std::printf("[block-backward] worst relative error vs finite differences %.3g (tolerance %.3g)\n", worst,
              kBlockFdTolerance);
}

TEST(BlockBackward, GradientsMatchFiniteDifferencesOfAFloat64Block) { check_against_finite_differences(false); }

TEST(BlockBackward, GradientsMatchFiniteDifferencesWithBiasesAndQkNorm) { check_against_finite_differences(true); }

// QuaRot's online Hadamards before down_proj and o_proj: each one's backward
// is its inverse transform.
TEST(BlockBackward, GradientsMatchFiniteDifferencesWithTheOnlineHadamards) {
  check_against_finite_differences(false, true);
  check_against_finite_differences(true, true);
}

TEST(BlockBackward, TapedForwardIsBlockForwardBitForBit) {
  STREAMQ_SEEDED_RNG(rng);
  for (bool variant : {false, true}) {
    SCOPED_TRACE(variant ? "biases and qk_norm" : "plain");
    const Problem p = make_problem(rng, variant);
    auto cpu = make_cpu_backend();
    std::vector<float> want = p.x;
    block_forward(*cpu, p.c, p.w, p.host_rope(), want.data(), p.nseq, p.seqlen);
    std::vector<float> got;
    cpu_backward(p, &got);
    EXPECT_TRUE(bitwise_equal(got, want));

    auto emu = make_emulated_backend({.memory_bytes = uint64_t{64} << 20});
    const ResidentRope rope(*emu, p.host_rope());
    const ResidentBlock block(*emu, p.w);
    ResidentChunk chunk(*emu, "x");
    std::vector<float> on_emu = p.x;
    BlockTape tape;
    block_forward_tape(*emu, p.c, block.view(), rope.table(), chunk.place(on_emu), p.nseq, p.seqlen, &tape);
    chunk.fetch(on_emu);
    EXPECT_TRUE(bitwise_equal(on_emu, want)) << "emulated";
  }
}

// The emulated device runs the CPU kernels behind checked pointers: its
// backward is the CPU's bit for bit. Held in bf16, it is the CPU's backward
// on the bf16-rounded weights (each linear widened exactly before its GEMMs).
TEST(BlockBackward, EmulatedDeviceGivesTheCpuBackward) {
  STREAMQ_SEEDED_RNG(rng);
  for (DeviceWeights held : {DeviceWeights::F32, DeviceWeights::Bf16}) {
    SCOPED_TRACE(to_string(held));
    Problem p = make_problem(rng, true);
    const BlockWeights original = p.w;
    if (held == DeviceWeights::Bf16)
      for (auto& [name, l] : p.w.linears)
        for (float& v : l.w) v = bf16_to_f32(f32_to_bf16(v));
    const Grads want = cpu_backward(p);

    auto emu = make_emulated_backend({.memory_bytes = uint64_t{64} << 20});
    const ResidentRope rope(*emu, p.host_rope());
    const ResidentBlock block(*emu, original, held);
    ResidentChunk chunk(*emu, "x");
    std::vector<float> x = p.x;
    BlockTape tape;
    block_forward_tape(*emu, p.c, block.view(), rope.table(), chunk.place(x), p.nseq, p.seqlen, &tape);
    std::map<std::string, Buffer<float>> dw_bufs;
    std::map<std::string, float*> dw;
    for (const char* name : {"self_attn.k_proj", "self_attn.o_proj", "mlp.down_proj"}) {  // a subset: the rest get none
      dw_bufs[name] = emu->alloc<float>(p.w.linears.at(name).w.size(), "dW");
      dw[name] = dw_bufs[name].data();
    }
    std::vector<float> d = p.g;
    ResidentChunk dchunk(*emu, "d");
    block_backward(*emu, p.c, block.view(), rope.table(), tape, dchunk.place(d), &dw);
    dchunk.fetch(d);
    EXPECT_TRUE(bitwise_equal(d, want.dx)) << "dL/dx";
    for (const auto& [name, buf] : dw_bufs)
      EXPECT_TRUE(bitwise_equal(emu->download_all(buf), want.dw.at(name))) << "dL/dW of " << name;
  }
}

TEST(BlockBackward, UnknownLinearInTheGradientMapThrows) {
  STREAMQ_SEEDED_RNG(rng);
  const Problem p = make_problem(rng, false);
  auto cpu = make_cpu_backend();
  const BlockView view = host_view(p.w);
  std::vector<float> x = p.x;
  BlockTape tape;
  block_forward_tape(*cpu, p.c, view, p.host_rope(), x.data(), p.nseq, p.seqlen, &tape);
  std::vector<float> d = p.g, sink(16 * 16);
  const std::map<std::string, float*> dw = {{"self_attn.qkv_proj", sink.data()}};
  EXPECT_THROW(block_backward(*cpu, p.c, view, p.host_rope(), tape, d.data(), &dw), InternalError);
}

}  // namespace
}  // namespace streamq::test
