// Resumable jobs (--workdir): a job killed at any moment and resumed gives
// the bytes of an uninterrupted run; a full disk keeps the last good
// checkpoint; a workdir refuses a different job; `streamq status` reports.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "io/file/fault_injection.h"
#include "kernels/backend.h"
#include "src/pipeline/quantize.h"
#include "src/job/workdir.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

// GPTAQ + CAE reads both flows and every kind of statistic; 16 sequences in
// 4 chunks give each block several reads and writes to be killed in.
std::vector<std::string> job_args(const std::string& out, const std::string& workdir) {
  std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "16", "--seqlen", "128", "--chunk-tokens", "512", "--seed", "5",
                                "--method", "gptaq", "--cae", "--bits", "3", "--group", "32", "--quiet"};
  if (!workdir.empty()) {
    a.push_back("--workdir");
    a.push_back(workdir);
  }
  return a;
}

// args with `flag`'s value replaced.
std::vector<std::string> with_flag(std::vector<std::string> args, const std::string& flag, const std::string& value) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag) args[i + 1] = value;
  return args;
}

QuantizeJob in_process_job(const std::string& out, const std::string& workdir) {
  QuantizeJob job;
  job.model_dir = test::demo_model_dir();
  job.out_dir = out;
  job.calib_path = kCalib;
  job.nsamples = 16;
  job.seqlen = 128;
  job.chunk_tokens = 512;
  job.seed = 5;
  job.quant.method = MethodKind::Gptaq;
  job.quant.cae = true;
  job.quant.bits = 3;
  job.quant.group = 32;
  job.workdir = workdir;
  return job;
}

// The files whose bytes must not depend on how the job was run.
void expect_same_outputs(const std::string& ref, const std::string& got, const std::string& context) {
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors", "config.json"}) {
    ASSERT_TRUE(fs::exists(got + "/" + f)) << context << ": " << f << " missing";
    EXPECT_TRUE(test::output_bytes(ref + "/" + f) == test::output_bytes(got + "/" + f)) << context << ": " << f << " differs";
  }
}

int64_t manifest_blocks(const std::string& workdir) {
  return Workdir::read_manifest(workdir).at("completed_blocks").get<int64_t>();
}

// Kill points and how many hits of each a run has room for (a resumed run has
// fewer, so a draw past the end just lets the run finish).
const std::vector<std::pair<std::string, int>> kPoints = {
    {"get", 60},      {"put", 30},  {"stats", 16}, {"quantize", 25}, {"block-file", 4}, {"flush", 4},
    {"manifest", 5},  {"manifest-done", 5}, {"drop", 4}, {"assemble", 40}, {"commit", 1}};

// `activations` is --activations for the killed runs: "disk" reads every
// boundary back from the workdir; "memory" keeps them in memory, mirrored to
// the workdir, and a resumed run reads only its first boundary from disk. The
// reference is a plain run (memory placement, no workdir): the bytes must not
// depend on placement either. Sequences go on until `min_kills` kills landed
// and every named point was hit.
void kill_and_resume(const std::string& activations, int min_kills) {
  test::ScratchDir dir("resume-kill-" + activations);
  const std::string ref = dir.file("ref");
  auto r = test::run_streamq(job_args(ref, ""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto args = [&](const std::string& out, const std::string& wd) {
    auto a = job_args(out, wd);
    a.insert(a.end(), {"--activations", activations});
    return a;
  };

  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (STREAMQ_TEST_SEED replays it)");
  std::mt19937_64 rng(seed);
  std::map<std::string, int> kills_at;  // point -> kills that landed there
  int kills = 0, timed_kills = 0, sequences = 0, attempt = 0;
  std::string history;  // every run of the sequence, printed when something fails
  // Sequences of kill-and-resume runs on one workdir, each ending with a run
  // that completes; the output of each must equal the uninterrupted run's.
  while (kills < min_kills || kills_at.size() < kPoints.size()) {
    ASSERT_LT(attempt, 400) << "kills are not landing: " << kills << " so far";
    const std::string out = dir.file("out" + std::to_string(sequences)), wd = dir.file("wd" + std::to_string(sequences));
    bool done = false;
    while (!done) {
      ++attempt;
      std::string prefix;
      std::string point;
      if (attempt % 5 == 0) {
        // A kill at a random instant rather than a named point.
        std::uniform_real_distribution<double> t(0.03, 0.6);  // a whole run takes about 0.5-1 s
        prefix = "timeout -s KILL " + std::to_string(t(rng));
      } else {
        // Points not yet covered first, so every phase is hit.
        std::vector<size_t> todo;
        for (size_t i = 0; i < kPoints.size(); ++i)
          if (!kills_at.count(kPoints[i].first)) todo.push_back(i);
        const size_t i = todo.empty() ? rng() % kPoints.size() : todo[rng() % todo.size()];
        point = kPoints[i].first;
        const int n = 1 + static_cast<int>(rng() % kPoints[i].second);
        prefix = "STREAMQ_TEST_KILL_AT=" + point + ":" + std::to_string(n);
      }
      r = test::run_streamq_with(prefix, args(out, wd));
      history += prefix + " -> " + std::to_string(r.exit_code) + "\n";
      if (r.exit_code == 137) {
        ++kills;
        if (point.empty()) ++timed_kills;
        else ++kills_at[point];
        // Whatever instant it died at, the workdir describes a consistent job.
        if (fs::exists(wd + "/manifest.json")) {
          const auto st = test::run_streamq({"status", "--workdir", wd});
          EXPECT_EQ(st.exit_code, 0) << st.err;
          EXPECT_NE(st.out.find("progress:"), std::string::npos) << st.out;
        }
        continue;
      }
      ASSERT_EQ(r.exit_code, 0) << "prefix " << prefix << ": " << r.err;
      done = true;
    }
    expect_same_outputs(ref, out, "sequence " + std::to_string(sequences));
    EXPECT_EQ(manifest_blocks(wd), 5);
    const auto rep = nlohmann::json::parse(test::read_all(out + "/streamq_report.json"));
    EXPECT_EQ(rep.at("memory").at("placement"), activations == "disk" ? "disk" : "memory-mirrored");
    // Nothing half-written is left beside the output.
    for (const auto& e : fs::directory_iterator(dir.path()))
      EXPECT_EQ(e.path().filename().string().find(".partial-"), std::string::npos) << e.path() << "\n" << history;
    history.clear();
    ++sequences;
  }
  std::string where;
  for (const auto& [p, n] : kills_at) where += " " + p + ":" + std::to_string(n);
  std::cout << "activations " << activations << ": kills: " << kills << " (" << timed_kills
            << " at random instants; named:" << where << ") over " << sequences << " resumed jobs\n";
  EXPECT_GE(kills, min_kills);
}

TEST(Resume, KilledAtTwentyPlusPointsResumesToIdenticalBytes) { kill_and_resume("disk", 24); }

// The default for a workdir job whose activations fit: memory mirrored to the
// workdir. Fewer kills (the runs are the same length), every named point.
TEST(Resume, MirroredMemoryKilledAtEveryPointResumesToIdenticalBytes) { kill_and_resume("memory", 14); }

TEST(Resume, RerunOfAFinishedJobChangesNothing) {
  test::ScratchDir dir("resume-done");
  const std::string out = dir.file("out"), wd = dir.file("wd");
  auto r = test::run_streamq(job_args(out, wd));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string before = test::read_all(out + "/model.safetensors");
  r = test::run_streamq(job_args(out, wd));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(before == test::read_all(out + "/model.safetensors"));
  const auto st = test::run_streamq({"status", "--workdir", wd});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  EXPECT_NE(st.out.find("5/5 blocks"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("finished"), std::string::npos) << st.out;
}

TEST(Resume, WorkdirRefusesADifferentJobUntilRestart) {
  test::ScratchDir dir("resume-identity");
  const std::string wd = dir.file("wd");
  auto r = test::run_streamq_with("STREAMQ_TEST_KILL_AT=drop:2", job_args(dir.file("a"), wd));
  ASSERT_EQ(r.exit_code, 137) << r.err;
  ASSERT_EQ(manifest_blocks(wd), 2);

  auto other = with_flag(job_args(dir.file("b"), wd), "--bits", "4");
  r = test::run_streamq(other);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("different method"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bits: 3 -> 4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--restart"), std::string::npos) << r.err;

  // Another seed draws other calibration windows.
  r = test::run_streamq(with_flag(job_args(dir.file("b"), wd), "--seed", "6"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("different calibration"), std::string::npos) << r.err;

  other.push_back("--restart");
  r = test::run_streamq(other);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(manifest_blocks(wd), 5);
  EXPECT_NE(Workdir::read_manifest(wd).dump().find("\"bits\":4"), std::string::npos);
}

// The BLAS kernel family rounds every GEMM, so a job resumes only under the
// one it started with, and the refusal names the OPENBLAS_CORETYPE that
// resumes it. Prescott (SSE3) runs on any x86-64 and is no family the
// product picks itself; a workdir of an older version, which does not name
// its kernels, resumes under any.
TEST(Resume, WorkdirResumesOnlyUnderItsBlasKernels) {
  test::ScratchDir dir("resume-blas");
  const std::string wd = dir.file("wd");
  auto r = test::run_streamq_with("STREAMQ_TEST_KILL_AT=drop:2", job_args(dir.file("a"), wd));
  ASSERT_EQ(r.exit_code, 137) << r.err;
  nlohmann::json m = Workdir::read_manifest(wd);
  const std::string family = m.at("identity").at("output").at("blas_kernels").get<std::string>();
  ASSERT_FALSE(family.empty());
  const std::string other = family == "Prescott" ? "Nehalem" : "Prescott";

  r = test::run_streamq_with("OPENBLAS_CORETYPE=" + other, job_args(dir.file("a"), wd));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("OPENBLAS_CORETYPE=" + family + " to resume"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--restart"), std::string::npos) << r.err;
  EXPECT_EQ(manifest_blocks(wd), 2);  // refused before anything changed
  // A job that must restart anyway is told that, not which kernels resume it.
  r = test::run_streamq_with("OPENBLAS_CORETYPE=" + other, with_flag(job_args(dir.file("a"), wd), "--bits", "4"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("different method"), std::string::npos) << r.err;

  m.at("identity").at("output").erase("blas_kernels");
  test::write_all(wd + "/manifest.json", m.dump());
  r = test::run_streamq_with("OPENBLAS_CORETYPE=" + other, job_args(dir.file("a"), wd));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(manifest_blocks(wd), 5);
}

// --restart discards the old job, and with it the output staging directory
// named after the old job's id, which no later run would otherwise remove.
TEST(Resume, RestartRemovesTheDiscardedJobsStaging) {
  test::ScratchDir dir("resume-restart-staging");
  const std::string wd = dir.file("wd"), out = dir.file("a");
  auto r = test::run_streamq_with("STREAMQ_TEST_KILL_AT=drop:2", job_args(out, wd));
  ASSERT_EQ(r.exit_code, 137) << r.err;
  const std::string old_staging = out + ".partial-job-" + Workdir::read_manifest(wd).at("job_id").get<std::string>();
  ASSERT_TRUE(fs::exists(old_staging)) << "the killed job staged nothing under its id";
  auto again = with_flag(job_args(out, wd), "--bits", "4");
  again.push_back("--restart");
  r = test::run_streamq(again);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(old_staging)) << old_staging << " survived --restart";
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find("a.partial-"), std::string::npos) << e.path();
}

TEST(Resume, DamagedBlockFileIsNamedNotTrusted) {
  test::ScratchDir dir("resume-damage");
  const std::string wd = dir.file("wd");
  auto r = test::run_streamq_with("STREAMQ_TEST_KILL_AT=drop:2", job_args(dir.file("a"), wd));
  ASSERT_EQ(r.exit_code, 137) << r.err;
  const std::string block = wd + "/blocks/block-00001.safetensors";
  std::string bytes = test::read_all(block);
  bytes[bytes.size() - 3] ^= 0x40;
  test::write_all(block, bytes);
  r = test::run_streamq(job_args(dir.file("a"), wd));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("block-00001.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("checksum"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("a")));
}

TEST(Resume, SecondProcessOnTheSameWorkdirIsRefused) {
  test::ScratchDir dir("resume-lock");
  Workdir first(dir.file("wd"), false, true);
  try {
    Workdir second(dir.file("wd"), false, true);
    FAIL() << "a second Workdir on a locked directory opened";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("another streamq process"), std::string::npos) << e.what();
  }
}

// A killed job's lock can outlive the process for a moment (its io_uring
// teardown closes the files after the exit): a lock released within the
// wait is taken, not reported as a running job.
TEST(Resume, ALockReleasedWithinTheWaitIsTaken) {
  test::ScratchDir dir("resume-lock-wait");
  auto first = std::make_unique<Workdir>(dir.file("wd"), false, true);
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    first.reset();
  });
  EXPECT_NO_THROW(Workdir(dir.file("wd"), false, true));
  release.join();
}

// With --activations `activations` (disk, or memory mirrored to the workdir,
// whose writes fail on its writer thread).
void full_disk(const std::string& activations) {
  test::ScratchDir dir("resume-enospc-" + activations);
  auto be = make_cpu_backend();
  const std::string ref = dir.file("ref");
  // How many bytes a whole job writes to its activation store.
  auto measure = std::make_shared<FaultInjector>();
  QuantizeJob job = in_process_job(ref, dir.file("wd-ref"));
  job.activations = activations == "disk" ? Placement::Disk : Placement::Memory;
  job.io_wrap = [&](std::unique_ptr<IoBackend> b) { return wrap_with_faults(std::move(b), measure); };
  run_quantize(job, *be, nullptr);
  const uint64_t total = measure->counters().bytes_written;
  ASSERT_GT(total, 0u);

  // The disk fills half way through.
  FaultPlan full;
  full.write_budget = total / 2;
  auto disk = std::make_shared<FaultInjector>(full);
  job = in_process_job(dir.file("out"), dir.file("wd"));
  job.activations = activations == "disk" ? Placement::Disk : Placement::Memory;
  job.io_wrap = [&](std::unique_ptr<IoBackend> b) { return wrap_with_faults(std::move(b), disk); };
  try {
    run_quantize(job, *be, nullptr);
    FAIL() << "the job finished on a full disk";
  } catch (const InternalError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
    EXPECT_NE(msg.find("block"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
  const int64_t kept = manifest_blocks(dir.file("wd"));
  EXPECT_GE(kept, 1);
  EXPECT_LT(kept, 5);
  EXPECT_FALSE(fs::exists(dir.file("out")));
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".partial-"), std::string::npos) << e.path();

  // Space freed: the same job resumes after the last good block.
  disk->set_plan(FaultPlan{});
  const QuantizeReport rep = run_quantize(job, *be, nullptr);
  EXPECT_EQ(rep.resumed_at_block, kept);
  EXPECT_EQ(rep.blocks.size(), 5u);
  EXPECT_EQ(rep.memory.at("placement"), activations == "disk" ? "disk" : "memory-mirrored");
  expect_same_outputs(ref, dir.file("out"), "after ENOSPC");
  // Every placement gives the bytes of a plain run.
  auto r = test::run_streamq(job_args(dir.file("plain"), ""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_outputs(dir.file("plain"), ref, "plain vs " + activations);
}

TEST(Resume, FullDiskStopsCleanlyKeepsTheLastGoodBlockAndResumes) { full_disk("disk"); }
TEST(Resume, FullDiskUnderTheMirrorStopsCleanlyAndResumes) { full_disk("memory"); }

TEST(Resume, WorkdirRunEqualsAPlainRunAndReportsCompression) {
  test::ScratchDir dir("resume-plain");
  auto r = test::run_streamq(job_args(dir.file("plain"), ""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_streamq(job_args(dir.file("wd-out"), dir.file("wd")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_outputs(dir.file("plain"), dir.file("wd-out"), "workdir vs plain");
  const auto rep = nlohmann::json::parse(test::read_all(dir.file("wd-out") + "/streamq_report.json"));
  ASSERT_EQ(rep.at("blocks").size(), 5u);
  for (const auto& b : rep.at("blocks")) {
    const double ratio = b.at("activations_out").at("ratio").get<double>();
    // float32 activations of a real model compress a little, never below 1.
    EXPECT_GT(ratio, 1.0);
    EXPECT_LT(ratio, 4.0);
  }
}

}  // namespace
}  // namespace streamq
