// quantize --learn sde (issue 18): the trained block's quantized output is
// closer to the FP block's than the untrained one's on what it trained on
// (the first block's output over the calibration windows, measured here from
// the written checkpoints by a plain forward); the cross-layer term changes
// the result and lambda 0 is the plain loss; a job killed mid-training
// resumes to the same bytes, as does one on one thread with its activations
// on disk; the errors name their flag.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/file/file_util.h"
#include "kernels/backend.h"
#include "src/core/error.h"
#include "src/model/model.h"
#include "src/pipeline/quantize.h"
#include "src/pipeline/tokens.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

QuantizeJob small_job(const std::string& out, MethodKind method) {
  QuantizeJob job;
  job.model_dir = test::demo_model_dir();
  job.out_dir = out;
  job.calib_path = kCalib;
  job.nsamples = 8;
  job.seqlen = 64;
  job.chunk_tokens = 256;
  job.seed = 3;
  job.overwrite = true;
  job.quant.method = method;
  job.quant.bits = 2;
  job.quant.group = 16;
  return job;
}

// The mean squared difference between block `b`'s output in `quantized_dir`
// and in the source model, each on its own flow's input (the quantized
// model's blocks before b on the quantized side): what --learn minimizes.
double block_output_mse(const std::string& quantized_dir, int64_t upto) {
  auto be = make_cpu_backend();
  Model fp(test::demo_model_dir()), q(quantized_dir);
  const ModelConfig& c = fp.config();
  const QuantizeJob job = small_job("", MethodKind::Rtn);
  const std::vector<int32_t> stream = load_token_stream(kCalib, TokensDType::U16, "", fp.dir(), c.vocab);
  const std::vector<int32_t> ids = sample_windows(stream, job.nsamples, job.seqlen, job.seed, kCalib);
  std::vector<float> xf(ids.size() * c.hidden), xq;
  fp.embed(ids.data(), static_cast<int64_t>(ids.size()), xf.data());
  xq = xf;
  const RopeTable rope = fp.rope_table(job.seqlen);
  for (int64_t b = 0; b <= upto; ++b) {
    std::vector<float> xq_in = xq;
    block_forward(*be, c, fp.load_block(b), rope, xf.data(), job.nsamples, job.seqlen);
    block_forward(*be, c, q.load_block(b), rope, xq.data(), job.nsamples, job.seqlen);
    if (b < upto) continue;
    // The target of block b is the FP block on the FP flow's input.
    double s = 0;
    for (size_t i = 0; i < xf.size(); ++i) s += (static_cast<double>(xq[i]) - xf[i]) * (static_cast<double>(xq[i]) - xf[i]);
    return s / static_cast<double>(xf.size());
  }
  return 0;
}

TEST(QuantizeLearn, TrainedBlockTracksTheFpOutputBetterThanRtn) {
  test::ScratchDir dir("quantize-learn");
  auto be = make_cpu_backend();
  QuantizeJob plain = small_job(dir.file("rtn"), MethodKind::Rtn);
  run_quantize(plain, *be, nullptr);
  QuantizeJob learned = small_job(dir.file("sde"), MethodKind::Rtn);
  learned.learn.kind = LearnKind::Sde;
  learned.learn.band = 4;
  learned.learn.cl_lambda = 0;
  learned.learn.epochs = 4;
  learned.learn.lr = 1e-3;
  const QuantizeReport r = run_quantize(learned, *be, nullptr);
  ASSERT_EQ(r.blocks.size(), 5u);
  for (const BlockReport& b : r.blocks) {
    ASSERT_TRUE(b.learn.has_value());
    EXPECT_EQ(b.learn->steps, 4 * 8);  // 4 epochs of 8 one-sequence steps
    EXPECT_GT(b.learn->params, 0);
    // The parts a cost model keeps apart are each timed and inside the total.
    EXPECT_GT(b.learn->seconds_grid, 0.0);
    EXPECT_GT(b.learn->seconds_svd, 0.0);
    EXPECT_LE(b.learn->seconds_svd + b.learn->seconds_grid, b.learn->seconds);
    // The training lowers its own loss (the first step is the RTN block).
    EXPECT_LT(b.learn->loss_last_epoch, b.learn->loss_first) << "block " << b.index;
  }
  const double mse_rtn = block_output_mse(dir.file("rtn"), 0);
  const double mse_sde = block_output_mse(dir.file("sde"), 0);
  EXPECT_LT(mse_sde, 0.9 * mse_rtn) << "rtn " << mse_rtn << " sde " << mse_sde;
  const auto report = nlohmann::json::parse(read_file(dir.file("sde/streamq_report.json")));
  EXPECT_EQ(report.at("settings").at("method").at("learn").at("kind"), "sde");
  EXPECT_TRUE(report.at("blocks").at(0).contains("learn"));
  EXPECT_EQ(report.at("blocks").at(0).at("learn").at("seconds_grid").get<double>(), r.blocks[0].learn->seconds_grid);

  // The cross-layer term changes what is learned (except where it cannot:
  // no next block); lambda 0 is exactly the plain loss.
  QuantizeJob cl = learned;
  cl.out_dir = dir.file("sde-cl");
  cl.learn.cl_lambda = 0.5;
  run_quantize(cl, *be, nullptr);
  EXPECT_FALSE(test::output_bytes(dir.file("sde/model.safetensors")) ==
               test::output_bytes(dir.file("sde-cl/model.safetensors")));
}

TEST(QuantizeLearn, KilledTrainingResumesToIdenticalBytes) {
  test::ScratchDir dir("quantize-learn-resume");
  auto args = [&](const std::string& out, const std::string& wd) {
    std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                  "--nsamples", "4", "--seqlen", "64", "--chunk-tokens", "128", "--method", "gptq",
                                  "--bits", "3", "--group", "16", "--learn", "sde", "--sde-band", "3",
                                  "--learn-epochs", "2", "--learn-lr", "1e-3", "--quiet"};
    if (!wd.empty()) a.insert(a.end(), {"--workdir", wd});
    return a;
  };
  auto r = test::run_streamq(args(dir.file("ref"), ""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string wd = dir.file("wd"), out = dir.file("out");
  // 8 steps per block: inside block 0, inside block 2, then a block file.
  for (const char* kill : {"learn:3", "learn:20", "block-file:2"}) {
    r = test::run_streamq_with(std::string("STREAMQ_TEST_KILL_AT=") + kill, args(out, wd));
    EXPECT_EQ(r.exit_code, 137) << kill << ": " << r.err;
  }
  r = test::run_streamq(args(out, wd));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors"})
    EXPECT_TRUE(test::output_bytes(dir.file("ref/") + f) == test::output_bytes(out + "/" + f)) << f;
  // Deterministic for a seed whatever the thread count, and read from the
  // compressed disk store through its read-ahead as from memory.
  auto one_thread = args(dir.file("one-thread"), "");
  one_thread.insert(one_thread.end(), {"--threads", "1", "--activations", "disk"});
  r = test::run_streamq(one_thread);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(test::output_bytes(dir.file("ref/model.safetensors")) ==
              test::output_bytes(dir.file("one-thread/model.safetensors")));
  const auto ins = test::run_streamq({"inspect", "--model", out});
  EXPECT_NE(ins.out.find("learned before quantizing: sde, band 3, cl-lambda 0.05, 2 epochs"), std::string::npos)
      << ins.out;
  auto changed = args(dir.file("out2"), wd);
  for (size_t i = 0; i + 1 < changed.size(); ++i)
    if (changed[i] == "--sde-band") changed[i + 1] = "5";
  r = test::run_streamq(changed);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("different method"), std::string::npos) << r.err;
}

// The tables' LoaQ cell (two-stage grid, act-order, the paper's band 100)
// on the demo model: the same bytes on 1 thread from the disk store as on
// every thread from memory. (SmolLM2's LoaQ +SDE cells once looked
// nondeterministic: the reruns had run OpenBLAS's SkylakeX kernels, the
// tables Haswell's; bench/RESULTS.md, nineteenth session.)
TEST(QuantizeLearn, LoaqTwoStageTrainingIsTheSameOnAnyThreadCountAndStore) {
  test::ScratchDir dir("quantize-learn-loaq");
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"quantize", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                    "--nsamples", "4", "--seqlen", "64", "--chunk-tokens", "128", "--method", "gptq",
                                    "--loaq", "--grid", "two-stage", "--act-order", "--bits", "3", "--group", "16",
                                    "--learn", "sde", "--cl-lambda", "0", "--quiet"};
  };
  auto r = test::run_streamq(args(dir.file("ref")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto one_thread = args(dir.file("one-thread"));
  one_thread.insert(one_thread.end(), {"--threads", "1", "--activations", "disk"});
  r = test::run_streamq(one_thread);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors"})
    EXPECT_TRUE(test::output_bytes(dir.file("ref/") + f) == test::output_bytes(dir.file("one-thread/") + f)) << f;
}

TEST(QuantizeLearn, ErrorsNameTheirFlag) {
  test::ScratchDir dir("quantize-learn-errors");
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", dir.file("x"), "--calib",
                                  kCalib, "--nsamples", "2", "--seqlen", "32"};
    a.insert(a.end(), extra.begin(), extra.end());
    return test::run_streamq(a);
  };
  auto r = run({"--sde-band", "3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--sde-band needs --learn sde"), std::string::npos) << r.err;
  r = run({"--learn", "lsi"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--learn 'lsi'"), std::string::npos) << r.err;
  r = run({"--learn", "sde", "--learn-epochs", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--learn-epochs 0"), std::string::npos) << r.err;
  r = run({"--learn", "sde", "--learn-batch", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--learn-batch 0"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

// Training on a device (the emulated one: its own address space, every op's
// pointers checked): the block's forwards and backwards and the SDE
// products run there, the band, fake quantization, mask and Adam on the
// host, so every step's values are the CPU's, and with the factor and sweep
// in float64 the outputs are the CPU's bytes, with and without the
// cross-layer term. The device's high-water mark stays under the plan,
// whose learn phase is the peak with a whole chunk per step.
TEST(QuantizeLearn, TrainsOnTheEmulatedDeviceToTheCpuBytes) {
  test::ScratchDir dir("quantize-learn-device");
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> a = {"quantize", "--model", test::demo_model_dir(), "--out", dir.file(name), "--calib",
                                  kCalib, "--nsamples", "8", "--seqlen", "128", "--seed", "3", "--quiet",
                                  "--learn", "sde", "--sde-band", "3", "--bits", "3", "--group", "32",
                                  "--learn-epochs", "1"};
    a.insert(a.end(), extra.begin(), extra.end());
    const auto r = test::run_streamq(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(test::read_all(dir.file(name) + "/streamq_report.json"));
  };
  const std::vector<std::string> emulated = {"--device", "emulated", "--gpu-mem-limit", "1GiB",
                                             "--factor-precision", "f64", "--sweep-precision", "f64"};
  for (const std::string cl : {"0", "0.05"}) {
    SCOPED_TRACE("cl-lambda " + cl);
    const auto cpu = run("cpu" + cl, {"--cl-lambda", cl, "--device", "cpu"});
    std::vector<std::string> dev = emulated;
    dev.insert(dev.end(), {"--cl-lambda", cl, "--learn-batch", "8"});
    const auto emu = run("emu" + cl, dev);
    auto cpu_batch8 = run("cpu-b8-" + cl, {"--cl-lambda", cl, "--device", "cpu", "--learn-batch", "8"});
    for (const char* f : {"model.safetensors", "streamq_quant.safetensors"})
      EXPECT_TRUE(test::output_bytes(dir.file("cpu-b8-" + cl + "/") + f) == test::output_bytes(dir.file("emu" + cl + "/") + f))
          << f;
    EXPECT_EQ(emu["blocks"][0]["learn"]["loss_first"], cpu_batch8["blocks"][0]["learn"]["loss_first"]);
    EXPECT_EQ(emu["blocks"][0]["learn"]["loss_last_epoch"], cpu_batch8["blocks"][0]["learn"]["loss_last_epoch"]);
    // The batch size is the training's: one sequence per step is another run.
    EXPECT_NE(cpu["blocks"][0]["learn"]["loss_last_epoch"], cpu_batch8["blocks"][0]["learn"]["loss_last_epoch"]);
    const auto& d = emu["device"];
    EXPECT_EQ(d["predicted_peak_phase"], "learn") << d.dump();
    EXPECT_LE(d["high_water_bytes"].get<uint64_t>(), d["predicted_peak_bytes"].get<uint64_t>()) << d.dump();
  }
}

}  // namespace
}  // namespace streamq
