// --host-mem-limit end to end: a job whose activations would not fit is
// planned onto disk and really stays under the limit (peak RSS of the child
// process), gives the same bytes as the unconstrained run, and a limit below
// the minimum fails up front with what is needed.
#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace streamq {
namespace {

nlohmann::json report_of(const std::string& out) {
  return nlohmann::json::parse(test::read_all(out + "/streamq_report.json"));
}

TEST(MemoryLimit, PeakRssStaysUnderTheLimitAndOutputsMatch) {
  test::ScratchDir dir("memlimit");
  // One block of hidden 512 and 128 x 512 calibration tokens: a boundary is
  // 128 MiB (GPTQ keeps the quantized flow alone), so memory placement holds
  // about 256 MiB of them.
  auto r = test::run_streamq({"synth", "--out", dir.file("m"), "--hidden", "512", "--intermediate", "1536", "--layers",
                              "1", "--heads", "8", "--kv-heads", "8", "--vocab", "512", "--seed", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::mt19937 rng(11);
  std::string ids(2 * 100000, '\0');
  for (size_t i = 0; i < ids.size(); i += 2) {
    const uint16_t v = static_cast<uint16_t>(rng() % 512);
    ids[i] = static_cast<char>(v & 0xff);
    ids[i + 1] = static_cast<char>(v >> 8);
  }
  test::write_all(dir.file("calib.bin"), ids);
  auto job = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", dir.file("m"), "--out", out, "--calib", dir.file("calib.bin"),
                                  "--nsamples", "128", "--seqlen", "512", "--chunk-tokens", "4096", "--bits", "4",
                                  "--group", "128", "--threads", "2", "--quiet"};
    a.insert(a.end(), extra.begin(), extra.end());
    return test::run_streamq(a);
  };
  r = job(dir.file("free"), {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto free = report_of(dir.file("free"));
  EXPECT_EQ(free.at("memory").at("placement"), "memory");
  const uint64_t limit = 300ull << 20;
  // The limit binds: unconstrained, the job uses more.
  EXPECT_GT(free.at("peak_rss_bytes").get<uint64_t>(), limit);

  r = job(dir.file("tight"), {"--host-mem-limit", "300M"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto tight = report_of(dir.file("tight"));
  const auto& mem = tight.at("memory");
  EXPECT_EQ(mem.at("placement"), "disk");
  EXPECT_LE(mem.at("estimated_peak_bytes").get<uint64_t>(), limit);
#if !defined(__SANITIZE_THREAD__)  // scripts/tsan.sh: TSan's shadow memory is counted in RSS too
  EXPECT_LE(tight.at("peak_rss_bytes").get<uint64_t>(), limit) << mem.dump();
#endif
  // Same chunking, other placement: the same bytes.
  ASSERT_EQ(mem.at("seqs_per_chunk"), free.at("memory").at("seqs_per_chunk"));
  EXPECT_TRUE(test::read_all(dir.file("free") + "/model.safetensors") ==
              test::read_all(dir.file("tight") + "/model.safetensors"));

  r = job(dir.file("tiny"), {"--host-mem-limit", "40M"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("needs at least"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--host-mem-limit is 40.00 MiB"), std::string::npos) << r.err;
  r = job(dir.file("bad"), {"--host-mem-limit", "lots"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--host-mem-limit"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace streamq
