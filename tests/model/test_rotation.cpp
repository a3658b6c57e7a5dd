// The offline rotation of the residual stream (src/model/rotation.h, issue
// 17): a rotated block maps x R to y R where the original maps x to y, and
// the rotated model (embedding, blocks, head) gives the original's logits, on
// stories260K, a synthetic GQA model with tied embeddings and odd widths,
// and a synthetic Qwen2 with q/k/v biases; randomized Hadamard rotations
// (H diag(signs) / sqrt(n)), H of order 2^k or m 2^k; and the per-head and
// online Hadamards (R2, R4 and o_proj's) keep a block's function.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/backend.h"
#include "src/core/error.h"
#include "src/methods/hadamard.h"
#include "src/model/model.h"
#include "src/model/rotation.h"
#include "src/pipeline/synth.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// Float32 forwards of the same function on rotated inputs: every product
// sums in another order, so each op's rounding (~sqrt(k) eps32 relative) is
// redrawn; ~10 ops a block and the head: measured 2.6e-7 to 3.1e-7 of the
// logits' norm on these models, and 1e-5 leaves 30x room while any wrong
// fold or side (an unrotated linear, a norm left in) is off by O(1).
constexpr double kRelTol = 1e-5;

using test::relative_difference;

// Embedding, every block and the head, on the original weights and on the
// rotated ones; returns the relative logit difference (and checks each
// block's output is the original's rotated).
double rotated_logits_difference(const std::string& dir, uint64_t seed) {
  Model model(dir);
  const ModelConfig& c = model.config();
  const HadamardTransform h(c.hidden, random_signs(c.hidden, seed));
  const Rotation r{c.hidden, [&](float* x, int64_t n) { h.apply(x, n); },
                   [&](float* x, int64_t n) { h.inverse(x, n); }};
  auto be = make_cpu_backend();
  const int64_t nseq = 2, seqlen = 16, t = nseq * seqlen;
  std::vector<int32_t> ids(t);
  std::mt19937_64 rng(seed);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(c.vocab));
  std::vector<float> x(t * c.hidden);
  model.embed(ids.data(), t, x.data());
  std::vector<float> xr = x;
  r.right(xr.data(), t);  // the rotated embedding's rows: E R
  const RopeTable rope = model.rope_table(seqlen);
  for (int64_t b = 0; b < c.layers; ++b) {
    BlockWeights w = model.load_block(b);
    block_forward(*be, c, w, rope, x.data(), nseq, seqlen);
    rotate_block(w, c.hidden, r);
    EXPECT_EQ(w.input_norm, std::vector<float>(c.hidden, 1.0f));
    block_forward(*be, c, w, rope, xr.data(), nseq, seqlen);
    std::vector<float> want = x;
    r.right(want.data(), t);
    EXPECT_LE(relative_difference(xr, want), kRelTol) << "block " << b;
  }
  std::vector<float> logits(t * c.vocab), logits_r(t * c.vocab);
  model.head(*be, x.data(), t, logits.data());
  std::vector<float> head = model.head_weight(), norm = model.final_norm();
  rotate_head(head, norm, r);
  std::vector<float> normed(xr.size());
  be->rmsnorm(xr.data(), norm.data(), normed.data(), t, c.hidden, static_cast<float>(c.rms_eps));
  be->gemm(Trans::N, Trans::T, t, c.vocab, c.hidden, 1.0f, normed.data(), c.hidden, head.data(), c.hidden, 0.0f,
           logits_r.data(), c.vocab);
  return relative_difference(logits_r, logits);
}

TEST(Rotation, Stories260KRotatedGivesTheSameLogits) {
  const double d = rotated_logits_difference(test::demo_model_dir(), 1);
  std::printf("[rotation] stories260K: logits differ by %.2e of their norm\n", d);
  EXPECT_LE(d, kRelTol);
}

TEST(Rotation, SyntheticGqaTiedAndQwen2WithBiasesGiveTheSameLogits) {
  test::ScratchDir dir("rotation");
  SynthSpec gqa;  // hidden 72 = 36 x 2 (H_36 by Paley II), head_dim 10, tied embeddings
  gqa.hidden = 72, gqa.intermediate = 200, gqa.layers = 2, gqa.heads = 6, gqa.kv_heads = 2, gqa.head_dim = 10;
  gqa.vocab = 512, gqa.tie_word_embeddings = true, gqa.seed = 5;
  write_synth_model(gqa, dir.file("gqa"), false, nullptr);
  SynthSpec qwen = synth_preset("qwen2.5-7b");  // q/k/v biases
  qwen.hidden = 48, qwen.intermediate = 100, qwen.layers = 2, qwen.heads = 4, qwen.kv_heads = 2, qwen.head_dim = 0;
  qwen.vocab = 512, qwen.seed = 6;
  write_synth_model(qwen, dir.file("qwen"), false, nullptr);
  for (const char* name : {"gqa", "qwen"}) {
    const double d = rotated_logits_difference(dir.file(name), 2);
    std::printf("[rotation] %s: logits differ by %.2e of their norm\n", name, d);
    EXPECT_LE(d, kRelTol) << name;
  }
}

// QuaRot's R2 (values and o_proj per head, offline) leaves a block's
// function alone in full precision (the same float32 bound); R3 (queries and
// keys per head after RoPE, online) runs only with a quantized KV cache,
// where it changes what is quantized, so the output moves (R3 is live).
TEST(Rotation, HeadRotationsKeepTheBlockFunction) {
  test::ScratchDir dir("rotation-heads");
  SynthSpec qwen = synth_preset("qwen2.5-7b");  // head_dim 12 = H_12 (Paley I), q/k/v biases
  qwen.hidden = 48, qwen.intermediate = 100, qwen.layers = 1, qwen.heads = 4, qwen.kv_heads = 2, qwen.head_dim = 0;
  qwen.vocab = 512, qwen.seed = 8;
  write_synth_model(qwen, dir.file("qwen"), false, nullptr);
  for (const std::string& m : {test::demo_model_dir(), dir.file("qwen")}) {
    Model model(m);
    const ModelConfig& c = model.config();
    const HadamardTransform h(c.head_dim);
    const Rotation r{c.head_dim, [&](float* x, int64_t n) { h.apply(x, n); },
                     [&](float* x, int64_t n) { h.inverse(x, n); }};
    auto be = make_cpu_backend();
    const int64_t nseq = 2, seqlen = 16, t = nseq * seqlen;
    std::vector<float> x(t * c.hidden);
    std::mt19937_64 rng(3);
    std::normal_distribution<float> nd;
    for (float& v : x) v = nd(rng);
    const RopeTable rope = model.rope_table(seqlen);
    BlockWeights w = model.load_block(0);
    std::vector<float> want = x;
    block_forward(*be, c, w, rope, want.data(), nseq, seqlen);
    BlockWeights wr = w;
    rotate_value_heads(wr, c, r);
    EXPECT_NE(wr.linears.at("self_attn.v_proj").w, w.linears.at("self_attn.v_proj").w);
    BlockView view = host_view(wr);
    view.head_hm = h.hm().data();
    view.head_m = h.split().m;
    std::vector<float> got = x;
    block_forward(*be, c, view, rope, got.data(), nseq, seqlen);
    const double d = relative_difference(got, want);
    std::printf("[rotation] %s: R2 block output differs by %.2e\n", m.c_str(), d);
    EXPECT_LE(d, kRelTol) << m;
    // With 4-bit keys the rotated and plain caches quantize differently.
    BlockView kv_plain = host_view(wr), kv_rot = view;
    kv_plain.kv.bits = kv_rot.kv.bits = 4;
    std::vector<float> a = x, b = x;
    block_forward(*be, c, kv_plain, rope, a.data(), nseq, seqlen);
    block_forward(*be, c, kv_rot, rope, b.data(), nseq, seqlen);
    EXPECT_GT(relative_difference(a, b), 100 * kRelTol) << m;
  }
  BlockWeights none;
  const Rotation r6{6, [](float*, int64_t) {}, [](float*, int64_t) {}};
  ModelConfig c;
  c.head_dim = 8;
  EXPECT_THROW(rotate_value_heads(none, c, r6), InternalError);
}

// QuaRot's online Hadamards, full width: down_proj's input by the transform
// of the intermediate size and o_proj's (the attention output, after R2 per
// head) by that of heads * head_dim, each weight by the same on its input
// side, leave a block's function alone in full precision (the same float32
// bound); with 4-bit activations they change what is quantized (live).
TEST(Rotation, OnlineHadamardsKeepTheBlockFunction) {
  test::ScratchDir dir("rotation-online");
  SynthSpec qwen = synth_preset("qwen2.5-7b");  // heads * head_dim 48 = 12 x 4, intermediate 96 = 12 x 8
  qwen.hidden = 48, qwen.intermediate = 96, qwen.layers = 1, qwen.heads = 4, qwen.kv_heads = 2, qwen.head_dim = 0;
  qwen.vocab = 512, qwen.seed = 9;
  write_synth_model(qwen, dir.file("qwen"), false, nullptr);
  const auto rotation = [](const HadamardTransform& h) {
    return Rotation{h.size(), [&h](float* x, int64_t n) { h.apply(x, n); },
                    [&h](float* x, int64_t n) { h.inverse(x, n); }};
  };
  for (const std::string& m : {test::demo_model_dir(), dir.file("qwen")}) {
    Model model(m);
    const ModelConfig& c = model.config();
    const HadamardTransform down(c.intermediate), o(c.heads * c.head_dim), head(c.head_dim);
    auto be = make_cpu_backend();
    const int64_t nseq = 2, seqlen = 16, t = nseq * seqlen;
    std::vector<float> x(t * c.hidden);
    std::mt19937_64 rng(4);
    std::normal_distribution<float> nd;
    for (float& v : x) v = nd(rng);
    const RopeTable rope = model.rope_table(seqlen);
    const BlockWeights w = model.load_block(0);
    for (const bool heads : {false, true}) {
      SCOPED_TRACE(m + (heads ? " with R2" : ""));
      BlockWeights wr = w;
      if (heads) rotate_value_heads(wr, c, rotation(head));
      rotate_o_input(wr, c, rotation(o));
      rotate_down_input(wr, c.intermediate, rotation(down));
      EXPECT_NE(wr.linears.at("self_attn.o_proj").w, w.linears.at("self_attn.o_proj").w);
      BlockView view = host_view(wr);
      view.online_hm = down.hm().data(), view.online_m = down.split().m;
      view.o_proj_hm = o.hm().data(), view.o_proj_m = o.split().m;
      std::vector<float> want = x, got = x;
      block_forward(*be, c, host_view(w), rope, want.data(), nseq, seqlen);
      block_forward(*be, c, view, rope, got.data(), nseq, seqlen);
      const double d = relative_difference(got, want);
      std::printf("[rotation] %s%s: online Hadamards' block output differs by %.2e\n", m.c_str(),
                  heads ? " (R2 too)" : "", d);
      EXPECT_LE(d, kRelTol);
      // o_proj's transform alone is live under 4-bit activations: dropping
      // it (down_proj's kept) quantizes another o_proj input.
      BlockWeights w_down = w;
      if (heads) rotate_value_heads(w_down, c, rotation(head));
      rotate_down_input(w_down, c.intermediate, rotation(down));
      BlockView a4_down = host_view(w_down), a4_both = view;
      a4_down.online_hm = view.online_hm, a4_down.online_m = view.online_m;
      a4_down.act.bits = a4_both.act.bits = 4;
      std::vector<float> a = x, b = x;
      block_forward(*be, c, a4_down, rope, a.data(), nseq, seqlen);
      block_forward(*be, c, a4_both, rope, b.data(), nseq, seqlen);
      EXPECT_GT(relative_difference(a, b), 100 * kRelTol);
    }
  }
}

TEST(Rotation, AWrongSizeIsRefused) {
  BlockWeights w;
  const Rotation r{8, [](float*, int64_t) {}, [](float*, int64_t) {}};
  EXPECT_THROW(rotate_block(w, 16, r), InternalError);
  ModelConfig c;
  c.heads = 4, c.head_dim = 4;  // o_proj's input is 16 wide
  EXPECT_THROW(rotate_o_input(w, c, r), InternalError);
}

}  // namespace
}  // namespace streamq
