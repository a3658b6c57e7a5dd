// Size flags: every --help that takes a size states parse_size's exact grammar
// (kSizeGrammar), and every size flag goes through parse_size (a bad size is
// an exit-2 error naming the flag and the grammar; a good one gets past it).
#include <gtest/gtest.h>

#include <sstream>

#include "scheduler/memory_budget.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// program_options wraps help text; compare with every whitespace run as one space.
std::string squeeze(const std::string& s) {
  std::istringstream in(s);
  std::string word, out;
  while (in >> word) out += (out.empty() ? "" : " ") + word;
  return out;
}

struct SizeFlag {
  std::vector<std::string> command;  // everything but the flag itself, all else valid or checked later
  std::string flag;
};

std::vector<SizeFlag> size_flags(const test::ScratchDir& dir) {
  return {{{"quantize", "--preset", "gptq-paper", "--model", dir.file("absent"), "--out", dir.file("o"), "--calib", dir.file("absent.bin")},
           "--host-mem-limit"},
          {{"export", "--from", dir.file("absent"), "--out", dir.file("g")}, "--max-shard-size"}};
}

TEST(CliSizes, EveryHelpThatTakesASizeStatesTheGrammar) {
  test::ScratchDir dir("cli-sizes");
  for (const SizeFlag& f : size_flags(dir)) {
    const auto r = test::run_streamq({f.command[0], "--help"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(f.flag), std::string::npos) << f.command[0];
    EXPECT_NE(squeeze(r.out).find(squeeze(kSizeGrammar)), std::string::npos)
        << f.command[0] << " --help lacks the size grammar:\n" << r.out;
  }
}

TEST(CliSizes, EverySizeFlagParsesTheOneGrammar) {
  test::ScratchDir dir("cli-sizes");
  for (const SizeFlag& f : size_flags(dir)) {
    auto args = f.command;
    args.insert(args.end(), {f.flag, "5GX"});
    auto r = test::run_streamq(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(f.flag + ": '5GX' is not a size"), std::string::npos) << r.err;
    EXPECT_NE(squeeze(r.err).find(squeeze(kSizeGrammar)), std::string::npos) << r.err;
    // "5G" (binary) and "5GB" (decimal) both parse: the run then fails on the
    // absent input instead, which names neither the flag nor a size.
    for (const char* good : {"5G", "5GB", "1.5GiB"}) {
      args = f.command;
      args.insert(args.end(), {f.flag, good});
      r = test::run_streamq(args);
      EXPECT_NE(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.err.find("is not a size"), std::string::npos) << f.flag << " " << good << ": " << r.err;
      EXPECT_NE(r.err.find(dir.file("absent")), std::string::npos) << r.err;
    }
  }
}

TEST(CliSizes, MaxShardSizeMustBePositive) {
  test::ScratchDir dir("cli-sizes");
  const auto r = test::run_streamq({"export", "--from", dir.file("absent"), "--out", dir.file("g"),
                                    "--max-shard-size", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--max-shard-size"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace streamq
