// quantize --rotate / --online-hadamard (issue 17): the streamed job (each
// block rotated as it loads, the embedding and head rotated once in row
// panels into the workdir) gives exactly what quantizing a model rotated
// whole in memory gives, the slow obvious reference; its outputs are
// standard checkpoints computing the source's function; a killed rotated
// job resumes to the same bytes; and the errors name their flag.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "io/file/file_util.h"
#include "io/formats/safetensors.h"
#include "kernels/backend.h"
#include "kernels/emulated/emulated_backend.h"
#include "src/core/error.h"
#include "src/methods/hadamard.h"
#include "src/model/model.h"
#include "src/model/rotation.h"
#include "src/pipeline/eval.h"
#include "src/pipeline/quantize.h"
#include "src/pipeline/rotated_ends.h"
#include "src/pipeline/synth.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

template <class Fn>
void expect_input_error(Fn fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

void write_file(const std::string& path, const std::string& text) { atomic_write_file(path, text); }

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";
const std::string kValid = test::source_dir() + "/data/tokens/tinystories_valid_tokens.bin";

// The reference: the whole model loaded, rotated with src/model/rotation.h's
// functions (the randomized Hadamard of `seed`), and written as an untied
// float32 checkpoint with no streamq_rotation key (a plain model to quantize).
void write_rotated_reference(const std::string& src, const std::string& out, uint64_t seed, bool heads) {
  Model model(src);
  const ModelConfig& c = model.config();
  const HadamardTransform h(c.hidden, random_signs(c.hidden, seed));
  const Rotation r{c.hidden, [&](float* x, int64_t n) { h.apply(x, n); },
                   [&](float* x, int64_t n) { h.inverse(x, n); }};
  std::vector<TensorSpec> plan;
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
  auto add = [&](const std::string& name, std::vector<float> v, std::vector<int64_t> shape) {
    plan.push_back({name, DType::F32, shape});
    tensors.emplace_back(name, std::move(v));
  };
  std::vector<float> embed = model.tensors().read_f32("model.embed_tokens.weight");
  rotate_embedding(embed, c.hidden, r);
  add("model.embed_tokens.weight", embed, {c.vocab, c.hidden});
  for (int64_t b = 0; b < c.layers; ++b) {
    BlockWeights w = model.load_block(b);
    rotate_block(w, c.hidden, r);
    if (heads) {  // R2 (R3 acts on queries and keys only: without KV quantization it changes nothing)
      const HadamardTransform hh(c.head_dim);
      rotate_value_heads(w, c, {c.head_dim, [&](float* x, int64_t n) { hh.apply(x, n); },
                                [&](float* x, int64_t n) { hh.inverse(x, n); }});
    }
    const std::string p = block_prefix(b);
    add(p + "input_layernorm.weight", w.input_norm, {c.hidden});
    add(p + "post_attention_layernorm.weight", w.post_norm, {c.hidden});
    for (const auto& l : block_linears(c)) {
      add(p + l.name + ".weight", w.linears.at(l.name).w, {l.out, l.in});
      if (l.has_bias) add(p + l.name + ".bias", w.linears.at(l.name).b, {l.out});
    }
  }
  std::vector<float> head = model.head_weight(), norm = model.final_norm();
  rotate_head(head, norm, r);
  add("model.norm.weight", norm, {c.hidden});
  add("lm_head.weight", head, {c.vocab, c.hidden});
  SafetensorsWriter w(out, plan, {});
  for (const auto& [name, v] : tensors) w.write_f32(name, v.data(), static_cast<int64_t>(v.size()));
  w.finish();
  nlohmann::json config = nlohmann::json::parse(read_file(src + "/config.json"));
  config["tie_word_embeddings"] = false;
  config["torch_dtype"] = "float32";
  write_file(out + "/config.json", config.dump(2));
}

// A tied Qwen2 (q/k/v biases) in float32 whose hidden 48 = 12 x 4 and
// intermediate 96 = 12 x 8 have Hadamard matrices.
SynthSpec tied_qwen() {
  SynthSpec s = synth_preset("qwen2.5-7b");
  s.hidden = 48, s.intermediate = 96, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.head_dim = 0;
  s.vocab = 512, s.tie_word_embeddings = true, s.dtype = DType::F32, s.seed = 11;
  return s;
}

// Synthetic norms are all ones, which would hide a norm not folded (or
// folded twice): every *norm.weight of model.safetensors (float32) gets
// seeded values in [0.5, 1.5], written in place at its offset.
void perturb_norms(const std::string& dir, uint64_t seed) {
  const std::string path = dir + "/model.safetensors";
  std::string bytes = read_file(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, header_len));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  int n = 0;
  for (const auto& [name, t] : header.items()) {
    if (name.find("norm.weight") == std::string::npos) continue;
    ASSERT_EQ(t.at("dtype"), "F32") << name;
    const uint64_t begin = t.at("data_offsets")[0], end = t.at("data_offsets")[1];
    for (uint64_t o = begin; o < end; o += 4) {
      const float v = u(rng);
      std::memcpy(bytes.data() + 8 + header_len + o, &v, 4);
    }
    ++n;
  }
  ASSERT_GT(n, 2);
  write_file(path, bytes);
}

QuantizeJob small_job(const std::string& model, const std::string& out) {
  QuantizeJob job;
  job.model_dir = model;
  job.out_dir = out;
  job.calib_path = kCalib;
  job.nsamples = 8;
  job.seqlen = 64;
  job.chunk_tokens = 256;
  job.seed = 3;
  job.quant.method = MethodKind::Gptaq;  // both flows: the FP flow runs the rotated original
  job.quant.bits = 3;
  job.quant.group = 16;
  return job;
}

// Every tensor of `a`'s and `b`'s files of the same name has the same bytes
// and dtype; returns how many were compared.
int expect_same_tensors(const std::string& a_dir, const std::string& b_dir, const std::string& base) {
  const auto a = SafetensorsFile::open(a_dir + "/" + base + ".safetensors");
  const auto b = SafetensorsFile::open(b_dir + "/" + base + ".safetensors");
  int n = 0;
  EXPECT_EQ(a->tensors().size(), b->tensors().size()) << base;
  for (const TensorInfo& t : a->tensors()) {
    const TensorInfo* u = b->find(t.name);
    if (!u) {
      ADD_FAILURE() << base << ": " << t.name << " missing from " << b_dir;
      continue;
    }
    EXPECT_EQ(t.dtype, u->dtype) << t.name;
    if (t.nbytes != u->nbytes) {
      ADD_FAILURE() << base << ": " << t.name << " has another size";
      continue;
    }
    EXPECT_EQ(std::memcmp(a->data(t), b->data(*u), t.nbytes), 0) << base << ": " << t.name << " differs";
    ++n;
  }
  return n;
}

// The streamed rotation against the whole-model one, bit for bit: the same
// rotated weights go into the same quantizer on the same rotated
// activations, so every quantized weight, code, scale and the ends agree.
TEST(QuantizeRotate, StreamedRotationEqualsQuantizingTheRotatedModel) {
  test::ScratchDir dir("quantize-rotate-ref");
  write_synth_model(tied_qwen(), dir.file("qwen"), false, nullptr);
  perturb_norms(dir.file("qwen"), 1);
  auto be = make_cpu_backend();
  for (const std::string& model : {test::demo_model_dir(), dir.file("qwen")})
  for (const bool heads : {false, true}) {
    SCOPED_TRACE(model + (heads ? " --head-hadamard" : ""));
    const uint64_t seed = 7;
    write_rotated_reference(model, dir.file("reference-model"), seed, heads);
    QuantizeJob ref = small_job(dir.file("reference-model"), dir.file("ref-out"));
    ref.overwrite = true;
    run_quantize(ref, *be, nullptr);
    QuantizeJob job = small_job(model, dir.file("rot-out"));
    job.overwrite = true;
    job.rotation.kind = RotationSpec::Kind::Hadamard;
    job.rotation.seed = seed;
    job.rotation.head_hadamard = heads;
    run_quantize(job, *be, nullptr);
    // embed, norms, head, 7 linears x (weight) + biases per block; 4 tensors per linear
    EXPECT_GT(expect_same_tensors(dir.file("ref-out"), dir.file("rot-out"), "model"), 10);
    EXPECT_GT(expect_same_tensors(dir.file("ref-out"), dir.file("rot-out"), "streamq_quant"), 10);
    const auto config = nlohmann::json::parse(read_file(dir.file("rot-out/config.json")));
    EXPECT_EQ(config.at("tie_word_embeddings"), false);
    EXPECT_EQ(config.at("streamq_rotation").at("rotate"), "hadamard");
    EXPECT_EQ(config.at("streamq_rotation").at("seed"), seed);
    const auto report = nlohmann::json::parse(read_file(dir.file("rot-out/streamq_report.json")));
    EXPECT_EQ(report.at("settings").at("method").at("rotation").at("rotate"), "hadamard");
    // A rotated output is a plain model to eval (it needs no flag) and not to rotate twice.
    EvalJob ev;
    ev.model_dir = dir.file("rot-out");
    ev.data_path = kValid;
    ev.seqlen = 64;
    ev.windows = 2;
    EXPECT_GT(run_eval(ev, *be, nullptr).ppl, 1.0);
    ev.rotation.kind = RotationSpec::Kind::Random;
    try {
      run_eval(ev, *be, nullptr);
      ADD_FAILURE() << "a rotated checkpoint rotated again";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("already rotated"), std::string::npos) << e.what();
    }
    QuantizeJob again = small_job(dir.file("rot-out"), dir.file("again"));
    again.rotation.kind = RotationSpec::Kind::Hadamard;
    EXPECT_THROW(run_quantize(again, *be, nullptr), InputError);
    EXPECT_FALSE(fs::exists(dir.file("again")));
  }
}

// The ends written in small row panels equal the whole-array rotation
// rounded to the stored dtype (bf16 here), the tied head untied.
TEST(QuantizeRotate, EndsInRowPanelsEqualTheWholeArrayRotation) {
  test::ScratchDir dir("quantize-rotate-ends");
  SynthSpec s = tied_qwen();
  write_synth_model(s, dir.file("f32"), false, nullptr);
  perturb_norms(dir.file("f32"), 2);
  // The same model in bf16, written by the tool's own converter path: the
  // norms through bf16 too.
  s.dtype = DType::BF16;
  write_synth_model(s, dir.file("m"), false, nullptr);
  {
    const auto src = SafetensorsModel::open(dir.file("f32"));
    std::vector<TensorSpec> plan;
    for (const auto& name : src->tensor_names()) plan.push_back({name, DType::BF16, src->info(name).shape});
    SafetensorsWriter w(dir.file("m"), plan, {});
    for (const auto& name : src->tensor_names()) {
      const std::vector<float> v = src->read_f32(name);
      w.write_f32(name, v.data(), static_cast<int64_t>(v.size()));
    }
    w.finish();
  }
  Model model(dir.file("m"));
  auto be = make_cpu_backend();
  RotationSpec spec;
  spec.kind = RotationSpec::Kind::Hadamard;
  spec.seed = 4;
  const ModelRotation rot(*be, model.config(), spec, dir.file("m"));
  // 7 rows a panel: 512 rows end in a partial panel.
  write_rotated_ends(model, rot, dir.path(), {}, 7 * 48 * sizeof(float));
  const auto ends = SafetensorsModel::open(dir.path());
  std::vector<float> embed = model.tensors().read_f32("model.embed_tokens.weight");
  std::vector<float> head = model.head_weight(), norm = model.final_norm();
  rotate_embedding(embed, s.hidden, rot.residual_rotation());
  rotate_head(head, norm, rot.residual_rotation());
  round_through_dtype(DType::BF16, embed.data(), static_cast<int64_t>(embed.size()));
  round_through_dtype(DType::BF16, head.data(), static_cast<int64_t>(head.size()));
  EXPECT_EQ(ends->info("lm_head.weight").dtype, DType::BF16);
  EXPECT_EQ(ends->read_f32("model.embed_tokens.weight"), embed);
  EXPECT_EQ(ends->read_f32("lm_head.weight"), head);
  EXPECT_EQ(ends->read_f32("model.norm.weight"), std::vector<float>(48, 1.0f));
  EXPECT_NE(embed, head);  // tied in the source, apart once the norm is folded into the head
}

using test::relative_difference;

std::vector<float> first_window_logits(Backend& be, const std::string& model, const std::string& npy) {
  EvalJob ev;
  ev.model_dir = model;
  ev.data_path = kValid;
  ev.seqlen = 64;
  ev.windows = 1;
  ev.logits_out = npy;
  run_eval(ev, be, nullptr);
  const std::string bytes = read_file(npy);
  const size_t n = 64 * 512;
  std::vector<float> v(n);
  std::memcpy(v.data(), bytes.data() + bytes.size() - n * sizeof(float), n * sizeof(float));
  return v;
}

// A W8 rotated output with the online Hadamards (before down_proj and
// o_proj) computes the source's logits within 8-bit rounding when eval
// applies the transforms its config names, and is far off without either:
// the activation sides are the checkpoint's. A checkpoint with the
// down_proj transform alone (as written before the o_proj one existed:
// online_hadamard without online_hadamard_o_proj) still computes the source's.
TEST(QuantizeRotate, OnlineHadamardOutputComputesTheSourceFunction) {
  test::ScratchDir dir("quantize-rotate-online");
  write_synth_model(tied_qwen(), dir.file("qwen"), false, nullptr);
  perturb_norms(dir.file("qwen"), 3);
  auto be = make_cpu_backend();
  QuantizeJob job = small_job(dir.file("qwen"), dir.file("out"));
  job.quant.method = MethodKind::Gptq;
  job.quant.bits = 8;
  job.quant.group = -1;
  job.rotation.kind = RotationSpec::Kind::Hadamard;
  job.rotation.online_hadamard = true;
  job.rotation.online_hadamard_o_proj = true;
  job.rotation.head_hadamard = true;
  run_quantize(job, *be, nullptr);
  const std::vector<float> fp = first_window_logits(*be, dir.file("qwen"), dir.file("fp.npy"));
  const std::vector<float> q = first_window_logits(*be, dir.file("out"), dir.file("q.npy"));
  // On a device the online transform's H_m is uploaded: the emulated device
  // computes with the CPU kernels, so its logits are the CPU's bit for bit.
  {
    auto dev = make_emulated_backend({.memory_bytes = 256ull << 20});
    EXPECT_EQ(first_window_logits(*dev, dir.file("out"), dir.file("qd.npy")), q);
  }
  // Without a config key the same weights run without that online transform.
  const nlohmann::json config = nlohmann::json::parse(read_file(dir.file("out/config.json")));
  EXPECT_EQ(config.at("streamq_rotation").at("online_hadamard"), true);
  EXPECT_EQ(config.at("streamq_rotation").at("online_hadamard_o_proj"), true);
  EXPECT_EQ(config.at("streamq_rotation").at("head_hadamard"), true);
  const auto logits_without = [&](const std::vector<std::string>& keys, const char* npy) {
    nlohmann::json stripped = config;
    for (const std::string& k : keys) {
      if (k == "streamq_rotation") stripped.erase(k);
      else stripped.at("streamq_rotation").erase(k);
    }
    write_file(dir.file("out/config.json"), stripped.dump(2));
    return first_window_logits(*be, dir.file("out"), dir.file(npy));
  };
  const double d = relative_difference(q, fp);
  const double d_no_o = relative_difference(logits_without({"online_hadamard_o_proj"}, "no_o.npy"), fp);
  const double d_none = relative_difference(logits_without({"streamq_rotation"}, "none.npy"), fp);
  write_file(dir.file("out/config.json"), config.dump(2));
  std::printf("[quantize-rotate] W8 rotated+online: logits differ from FP by %.2e (%.2e without o_proj's online "
              "transform, %.2e without either)\n", d, d_no_o, d_none);
  // 8-bit per-channel grids: each weight off by up to half a step, ~2^-9 of
  // a row's range, a few 1e-3 of the logits through two blocks; measured
  // 2-4e-3. Dropping a transform scrambles its linear's input: O(0.1-1).
  EXPECT_LT(d, 2e-2);
  EXPECT_GT(d_no_o, 10 * d);
  EXPECT_GT(d_none, 10 * d);

  // The older form: down_proj's transform alone, no online_hadamard_o_proj key.
  QuantizeJob old = job;
  old.out_dir = dir.file("old");
  old.rotation.online_hadamard_o_proj = false;
  run_quantize(old, *be, nullptr);
  const nlohmann::json old_config = nlohmann::json::parse(read_file(dir.file("old/config.json")));
  EXPECT_EQ(old_config.at("streamq_rotation").at("online_hadamard"), true);
  EXPECT_FALSE(old_config.at("streamq_rotation").contains("online_hadamard_o_proj")) << old_config.dump();
  const double d_old = relative_difference(first_window_logits(*be, dir.file("old"), dir.file("old.npy")), fp);
  std::printf("[quantize-rotate] W8 rotated+online down_proj only: logits differ from FP by %.2e\n", d_old);
  EXPECT_LT(d_old, 2e-2);
}

TEST(QuantizeRotate, ErrorsNameTheirFlagBeforeAnythingIsWritten) {
  test::ScratchDir dir("quantize-rotate-errors");
  auto be = make_cpu_backend();
  QuantizeJob job = small_job(test::demo_model_dir(), dir.file("gptq"));
  job.rotation.online_hadamard = true;
  job.format = OutputFormat::Gptq;
  expect_input_error([&] { run_quantize(job, *be, nullptr); }, {"--online-hadamard", "--format gptq", "fake"});
  EXPECT_FALSE(fs::exists(dir.file("gptq")));
  // hidden 92: no Hadamard matrix of order 92, 46 or 23 is built here.
  SynthSpec s;
  s.hidden = 92, s.intermediate = 128, s.layers = 1, s.heads = 2, s.kv_heads = 2, s.vocab = 512, s.seed = 1;
  write_synth_model(s, dir.file("h92"), false, nullptr);
  QuantizeJob h92 = small_job(dir.file("h92"), dir.file("h92-out"));
  h92.rotation.kind = RotationSpec::Kind::Hadamard;
  expect_input_error([&] { run_quantize(h92, *be, nullptr); }, {"--rotate hadamard", "92", "--rotate random"});
  EXPECT_FALSE(fs::exists(dir.file("h92-out")));
  // Its attention output is 92 wide too (2 heads x 46): o_proj's online
  // Hadamard is refused by name, though the intermediate size 128 has one.
  h92.rotation.kind = RotationSpec::Kind::None;
  h92.rotation.online_hadamard = h92.rotation.online_hadamard_o_proj = true;
  expect_input_error([&] { run_quantize(h92, *be, nullptr); },
                     {"--online-hadamard", "2 x 46 = 92", "o_proj", "run without --online-hadamard"});
  EXPECT_FALSE(fs::exists(dir.file("h92-out")));
  const auto r = test::run_streamq({"quantize", "--model", test::demo_model_dir(), "--out", dir.file("x"), "--calib",
                                    kCalib, "--rotate-seed", "3"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--rotate-seed needs --rotate"), std::string::npos) << r.err;
}

// Killed while writing the rotated ends, inside a block and while
// assembling, a rotated job resumes to an uninterrupted run's bytes; a
// rerun with another rotation seed is refused by name.
TEST(QuantizeRotate, KilledRotatedJobResumesToIdenticalBytes) {
  test::ScratchDir dir("quantize-rotate-resume");
  auto args = [&](const std::string& out, const std::string& wd) {
    std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                  "--nsamples", "8", "--seqlen", "64", "--chunk-tokens", "256", "--method", "gptaq",
                                  "--bits", "3", "--group", "16", "--rotate", "hadamard", "--rotate-seed", "2",
                                  "--online-hadamard", "--quiet"};
    if (!wd.empty()) a.insert(a.end(), {"--workdir", wd});
    return a;
  };
  auto r = test::run_streamq(args(dir.file("ref"), ""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string wd = dir.file("wd"), out = dir.file("out");
  for (const char* kill : {"rotated-panel:1", "rotated-panel:2", "block-file:2", "flush:1", "assemble:9"}) {
    r = test::run_streamq_with(std::string("STREAMQ_TEST_KILL_AT=") + kill, args(out, wd));
    EXPECT_EQ(r.exit_code, 137) << kill << ": " << r.err;
  }
  r = test::run_streamq(args(out, wd));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors", "config.json"})
    EXPECT_TRUE(test::output_bytes(dir.file("ref/") + f) == test::output_bytes(out + "/" + f)) << f;
  const auto ins = test::run_streamq({"inspect", "--model", out});
  EXPECT_NE(ins.out.find("rotated: hadamard, online Hadamard before down_proj, online Hadamard before o_proj"),
            std::string::npos)
      << ins.out;
  EXPECT_NE(ins.out.find("a loader must rotate down_proj's and o_proj's inputs"), std::string::npos) << ins.out;
  // --online-hadamard is both of QuaRot's online transforms.
  const auto config = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(config.at("streamq_rotation").at("online_hadamard"), true);
  EXPECT_EQ(config.at("streamq_rotation").at("online_hadamard_o_proj"), true);
  auto changed = args(dir.file("out2"), wd);
  for (size_t i = 0; i + 1 < changed.size(); ++i)
    if (changed[i] == "--rotate-seed") changed[i + 1] = "3";
  r = test::run_streamq(changed);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("different method"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rotation"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace streamq
