// `streamq synth`: a tiny synthetic model loads and runs through the library
// with finite logits and activations of steady RMS; output bytes depend only
// on the seed (not on threads or sharding); presets have the published shapes
// (checked on the plan only: no big model is written); CLI errors exit 2.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <filesystem>

#include "src/core/error.h"
#include "kernels/backend.h"
#include "src/model/model.h"
#include "src/pipeline/synth.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// Residual RMS starts at 1 (unit-variance embeddings) and each block adds two
// terms scaled by 1/sqrt(2*layers): a healthy stack stays well inside [0.5, 4];
// exploding or vanishing initialisations leave it within a few layers.
constexpr double kMinRms = 0.5, kMaxRms = 4.0;

SynthSpec tiny_spec(uint64_t seed) {
  SynthSpec s;
  s.hidden = 64, s.intermediate = 128, s.layers = 3, s.heads = 4, s.kv_heads = 2, s.vocab = 256;
  s.seed = seed;
  return s;
}

double rms(const std::vector<float>& x) {
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  return std::sqrt(ss / static_cast<double>(x.size()));
}

bool all_finite(const std::vector<float>& x) {
  for (float v : x)
    if (!std::isfinite(v)) return false;
  return true;
}

// Runs 2 sequences of 32 tokens through the whole model; checks every block's
// output and the logits.
void expect_healthy_forward(const std::string& dir) {
  Model model(dir);
  const ModelConfig& c = model.config();
  auto be = make_cpu_backend();
  const int64_t nseq = 2, seqlen = 32, t = nseq * seqlen;
  std::vector<int32_t> ids(t);
  for (int64_t i = 0; i < t; ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % c.vocab);
  std::vector<float> x(t * c.hidden);
  model.embed(ids.data(), t, x.data());
  const RopeTable rope = model.rope_table(seqlen);
  for (int64_t b = 0; b < c.layers; ++b) {
    block_forward(*be, c, model.load_block(b), rope, x.data(), nseq, seqlen);
    ASSERT_TRUE(all_finite(x)) << "block " << b;
    EXPECT_GT(rms(x), kMinRms) << "block " << b;
    EXPECT_LT(rms(x), kMaxRms) << "block " << b;
  }
  std::vector<float> logits(t * c.vocab);
  model.head(*be, x.data(), t, logits.data());
  ASSERT_TRUE(all_finite(logits));
  EXPECT_GT(rms(logits), 0.1);  // lm_head ~N(0, 1/hidden) on unit-RMS normed input: about 1
  EXPECT_LT(rms(logits), 10.0);
}

TEST(Synth, TinyLlamaRunsWithSteadyActivations) {
  test::ScratchDir dir("synth");
  const SynthResult r = write_synth_model(tiny_spec(1), dir.file("m"), false, nullptr);
  EXPECT_EQ(r.tensors, 1 + 3 * 9 + 2);
  EXPECT_EQ(r.files, std::vector<std::string>{"model.safetensors"});
  const ModelConfig c = load_model_config(dir.file("m"));
  EXPECT_EQ(c.arch, Architecture::Llama);
  EXPECT_EQ(c.kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  expect_healthy_forward(dir.file("m"));
}

TEST(Synth, TinyQwen2HasBiasesAndRuns) {
  test::ScratchDir dir("synth");
  SynthSpec s = synth_preset("qwen2.5-7b");
  s.hidden = 64, s.intermediate = 96, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.vocab = 128;
  s.dtype = DType::F16;
  write_synth_model(s, dir.file("q"), false, nullptr);
  const Model m(dir.file("q"));
  EXPECT_EQ(m.config().arch, Architecture::Qwen2);
  EXPECT_TRUE(m.config().attention_bias);
  EXPECT_EQ(m.tensors().info("model.layers.1.self_attn.k_proj.bias").dtype, DType::F16);
  expect_healthy_forward(dir.file("q"));
}

TEST(Synth, BytesDependOnlyOnTheSeed) {
  test::ScratchDir dir("synth");
  write_synth_model(tiny_spec(7), dir.file("a"), false, nullptr);
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    write_synth_model(tiny_spec(7), dir.file("b"), false, nullptr);
  }
  write_synth_model(tiny_spec(8), dir.file("c"), false, nullptr);
  const std::string a = test::read_all(dir.file("a/model.safetensors"));
  EXPECT_EQ(a, test::read_all(dir.file("b/model.safetensors")));
  EXPECT_EQ(test::read_all(dir.file("a/config.json")), test::read_all(dir.file("b/config.json")));
  EXPECT_NE(a, test::read_all(dir.file("c/model.safetensors")));

  // Sharding changes the files, never the values.
  SynthSpec sharded = tiny_spec(7);
  sharded.max_shard_bytes = 64 << 10;
  const SynthResult r = write_synth_model(sharded, dir.file("s"), false, nullptr);
  EXPECT_GT(r.files.size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(dir.file("s/model.safetensors.index.json")));
  const Model ma(dir.file("a")), ms(dir.file("s"));
  for (const auto& name : ma.tensors().tensor_names())
    EXPECT_EQ(ma.tensors().read_f32(name), ms.tensors().read_f32(name)) << name;
}

TEST(Synth, GeneratorIsUnitNormalAndFillsEveryElement) {
  constexpr int64_t n = 200003;  // not a multiple of the generator's block
  std::vector<float> v(n, std::nanf(""));
  synth_fill(3, "some.tensor", {1.0f, 0}, DType::F32, v.data(), n);
  double sum = 0, ss = 0;
  for (float x : v) {
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    ss += double(x) * x;
  }
  const double mean = sum / n, var = ss / n - mean * mean;
  // Standard errors at n = 2e5: mean 0.0022, variance about 0.003.
  EXPECT_LT(std::fabs(mean), 0.012);
  EXPECT_NEAR(var, 1.0, 0.015);
  std::vector<float> ones(1000);
  synth_fill(3, "norm", {0, 1.0f}, DType::F32, ones.data(), 1000);
  EXPECT_EQ(ones, std::vector<float>(1000, 1.0f));
}

int64_t total_params(const SynthSpec& s) {
  int64_t n = 0;
  for (const auto& t : synth_tensor_plan(s)) {
    int64_t k = 1;
    for (int64_t d : t.shape) k *= d;
    n += k;
  }
  return n;
}

TEST(Synth, PresetsHaveThePublishedShapes) {
  // Parameter counts of the published checkpoints.
  const SynthSpec l8 = synth_preset("llama3-8b");
  EXPECT_EQ(total_params(l8), 8030261248);
  const SynthSpec l70 = synth_preset("llama3-70b");
  EXPECT_EQ(total_params(l70), 70553706496);
  const auto plan70 = synth_tensor_plan(l70);
  EXPECT_EQ(plan70.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(plan70.front().shape, (std::vector<int64_t>{128256, 8192}));
  EXPECT_EQ(plan70.front().dtype, DType::BF16);
  const SynthSpec q = synth_preset("qwen2.5-7b");
  EXPECT_EQ(total_params(q), 7615616512);

  const ModelConfig c70 = parse_model_config(synth_config_json(l70).dump(), "llama3-70b");
  EXPECT_EQ(c70.layers, 80);
  EXPECT_EQ(c70.heads, 64);
  EXPECT_EQ(c70.kv_heads, 8);
  EXPECT_EQ(c70.head_dim, 128);
  EXPECT_EQ(c70.intermediate, 28672);
  EXPECT_EQ(c70.rope_theta, 500000.0);
  const ModelConfig cq = parse_model_config(synth_config_json(q).dump(), "qwen2.5-7b");
  EXPECT_EQ(cq.arch, Architecture::Qwen2);
  EXPECT_TRUE(cq.attention_bias);
  EXPECT_EQ(cq.kv_heads, 4);
  EXPECT_EQ(cq.vocab, 152064);
  EXPECT_EQ(parse_model_config(synth_config_json(l8).dump(), "l8").intermediate, 14336);

  EXPECT_THROW(synth_preset("gpt2"), InputError);
  SynthSpec bad = tiny_spec(0);
  bad.kv_heads = 3;  // 4 heads are not a multiple of 3
  EXPECT_THROW(synth_config_json(bad), InputError);
}

TEST(Synth, CliWritesAModelAndRejectsBadFlags) {
  test::ScratchDir dir("synth");
  const std::vector<std::string> base = {"synth", "--hidden", "32", "--intermediate", "48", "--layers", "1",
                                         "--heads", "2", "--kv-heads", "1", "--vocab", "64", "--quiet"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return test::run_streamq(a);
  };
  const test::CliResult ok = with({"--out", dir.file("m"), "--dtype", "f32", "--seed", "5"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("tensors 12"), std::string::npos) << ok.out;
  EXPECT_EQ(Model(dir.file("m")).tensors().info("lm_head.weight").dtype, DType::F32);

  const test::CliResult again = with({"--out", dir.file("m")});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  const test::CliResult preset = test::run_streamq({"synth", "--out", dir.file("p"), "--preset", "llama9"});
  EXPECT_EQ(preset.exit_code, 2);
  EXPECT_NE(preset.err.find("llama3-70b"), std::string::npos) << preset.err;
  EXPECT_EQ(with({"--out", dir.file("d"), "--dtype", "i8"}).exit_code, 2);
  const test::CliResult missing = test::run_streamq({"synth", "--out", dir.file("x"), "--hidden", "32"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--intermediate"), std::string::npos) << missing.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
}

}  // namespace
}  // namespace streamq
