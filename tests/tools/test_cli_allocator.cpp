// The allocator policy is the program's, set at start-up: `streamq --help`
// states it and the environment variable that turns it off, and no library
// folder reads the environment.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/support/test_util.h"

namespace streamq {
namespace {

TEST(CliAllocator, TopLevelHelpStatesThePolicyAndItsSwitch) {
  const auto r = test::run_streamq({"--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("mmap threshold"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("STREAMQ_GLIBC_DYNAMIC_MMAP=1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("STREAMQ_KEEP_LARGE_BLOCKS=0"), std::string::npos) << r.out;
}

TEST(CliAllocator, EitherPolicyRuns) {
  for (const char* env : {"", "STREAMQ_GLIBC_DYNAMIC_MMAP=1", "STREAMQ_KEEP_LARGE_BLOCKS=0"}) {
    const auto r = test::run_streamq_with(env, {"inspect", "--model", test::demo_model_dir()});
    EXPECT_EQ(r.exit_code, 0) << env << ": " << r.err;
  }
}

// A switch set to anything but 0 or 1 is refused by name before any work,
// not silently taken as the default.
TEST(CliAllocator, ASwitchThatIsNeither0Nor1IsRefusedByName) {
  for (const char* env : {"STREAMQ_KEEP_LARGE_BLOCKS=false", "STREAMQ_GLIBC_DYNAMIC_MMAP=yes"}) {
    const auto r = test::run_streamq_with(env, {"inspect", "--model", test::demo_model_dir()});
    EXPECT_EQ(r.exit_code, 2) << env;
    const std::string name = std::string(env).substr(0, std::string(env).find('='));
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("set it to 0 or 1"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("layers"), std::string::npos) << "inspect ran: " << r.out;
  }
}

// A library that reads the environment has settings no caller can see or
// pass; the programs (tools/, bench/, tests/) may.
TEST(CliAllocator, NoLibraryFolderReadsTheEnvironment) {
  namespace fs = std::filesystem;
  for (const char* folder : {"src", "io", "scheduler", "kernels"})
    for (auto it = fs::recursive_directory_iterator(test::source_dir() + "/" + folder);
         it != fs::recursive_directory_iterator(); ++it) {
      // Vendored third-party code (marked as scripts/check_layering.py reads it) keeps its own ways.
      if (it->is_directory() && fs::exists(it->path() / "VENDORED.md")) it.disable_recursion_pending();
      const std::string ext = it->path().extension().string();
      if (!it->is_regular_file() || (ext != ".cpp" && ext != ".h" && ext != ".cu" && ext != ".cuh")) continue;
      EXPECT_EQ(test::read_all(it->path().string()).find("getenv("), std::string::npos) << it->path();
    }
}

}  // namespace
}  // namespace streamq
