// The resume table (src/pipeline/resume_rules.h): every quantize flag has a
// row; a resume with changed operational flags gives the same bytes; a
// resume with a changed frozen field is refused naming the field; `streamq
// status` prints the table.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <sstream>

#include "src/pipeline/resume_rules.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

const std::string kCalib = test::source_dir() + "/data/tokens/tinystories_calib_tokens.bin";

std::vector<std::string> job_args(const std::string& out, const std::string& wd, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"quantize", "--preset", "gptq-paper", "--model", test::demo_model_dir(), "--out", out, "--calib", kCalib,
                                "--nsamples", "16", "--seqlen", "128", "--chunk-tokens", "512", "--seed", "13",
                                "--method", "gptq", "--bits", "3", "--group", "32", "--quiet"};
  if (!wd.empty()) a.insert(a.end(), {"--workdir", wd});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::vector<std::string> with_flag(std::vector<std::string> args, const std::string& flag, const std::string& value) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag) args[i + 1] = value;
  return args;
}

TEST(ResumeRules, EveryQuantizeFlagHasARow) {
  const auto r = test::run_streamq({"quantize", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Option lines of boost's help: "  --bits arg (=4)  ..." or "  -h [ --help ]".
  const std::regex option(R"(^\s+(?:-\w \[ )?--([a-z0-9-]+))");
  std::istringstream lines(r.out);
  std::set<std::string> flags;
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, option)) flags.insert("--" + m[1].str());
  }
  ASSERT_GT(flags.size(), 30u) << r.out;
  for (const auto& f : flags) EXPECT_NE(find_resume_rule(f), nullptr) << f << " has no row in the resume table";
  EXPECT_FALSE(find_resume_rule("--threads")->can_override == false);
  EXPECT_FALSE(find_resume_rule("--bits")->can_override);
}

TEST(ResumeRules, ChangedOperationalFlagsResumeToTheSameBytes) {
  test::ScratchDir dir("resume-rules-ok");
  const std::string ref = dir.file("ref"), out = dir.file("out"), wd = dir.file("wd");
  auto r = test::run_streamq(job_args(ref, ""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_streamq_with("STREAMQ_TEST_KILL_AT=drop:2", job_args(out, wd, {"--threads", "2"}));
  ASSERT_EQ(r.exit_code, 137) << r.err;
  r = test::run_streamq(job_args(out, wd,
                                 {"--threads", "1", "--prefetch-depth", "0", "--activations", "disk", "--io", "posix",
                                  "--linear-concurrency", "1", "--zstd-level", "3", "--host-mem-limit", "8G"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"model.safetensors", "streamq_quant.safetensors"})
    EXPECT_TRUE(test::output_bytes(ref + "/" + f) == test::output_bytes(out + "/" + f)) << f << " differs after the resume";
}

TEST(ResumeRules, ChangedFrozenFieldIsRefusedNamingItAndStatusPrintsTheTable) {
  test::ScratchDir dir("resume-rules-refused");
  const std::string out = dir.file("out"), wd = dir.file("wd");
  auto r = test::run_streamq_with("STREAMQ_TEST_KILL_AT=drop:2", job_args(out, wd));
  ASSERT_EQ(r.exit_code, 137) << r.err;
  r = test::run_streamq(with_flag(job_args(out, wd), "--chunk-tokens", "256"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("different output (chunk_tokens: 512 -> 256)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--restart"), std::string::npos) << r.err;
  r = test::run_streamq(job_args(out, wd, {"--format", "gptq"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("format: \"fake\" -> \"gptq\""), std::string::npos) << r.err;
  r = test::run_streamq(with_flag(job_args(out, wd), "--group", "64"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("group: 32 -> 64"), std::string::npos) << r.err;

  const auto st = test::run_streamq({"status", "--workdir", wd});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  const auto may = st.out.find("on resume, may change:"), fixed = st.out.find("on resume, fixed");
  ASSERT_NE(may, std::string::npos) << st.out;
  ASSERT_NE(fixed, std::string::npos) << st.out;
  const auto threads = st.out.find("  --threads  "), bits = st.out.find("  --bits  ");
  EXPECT_TRUE(may < threads && threads < fixed) << st.out;
  EXPECT_GT(bits, fixed) << st.out;
}

}  // namespace
}  // namespace streamq
