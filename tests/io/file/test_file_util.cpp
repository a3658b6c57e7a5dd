// file_util: whole-file reads, atomic replacement that leaves no temporaries,
// and directory creation errors that name the directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(FileUtil, AtomicWriteReplacesAndLeavesNoTemporary) {
  test::ScratchDir dir("fileutil");
  const std::string path = dir.file("manifest.json");
  atomic_write_file(path, "first");
  EXPECT_EQ(read_file(path), "first");
  std::string big(3 << 20, '\0');  // larger than one read() chunk, with NUL bytes
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  atomic_write_file(path, big);
  EXPECT_EQ(read_file(path), big);
  atomic_write_file(dir.file("empty"), "");
  EXPECT_EQ(read_file(dir.file("empty")), "");
  EXPECT_EQ(dir_entries(dir.path()), (std::vector<std::string>{"empty", "manifest.json"}));
}

TEST(FileUtil, ReadFileErrorsNameThePath) {
  test::ScratchDir dir("fileutil");
  try {
    read_file(dir.file("missing.json"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_file(dir.path()), InputError);
}

TEST(FileUtil, AtomicWriteIntoMissingDirectoryFails) {
  test::ScratchDir dir("fileutil");
  try {
    atomic_write_file(dir.file("no/such/dir/x.json"), "x");
    FAIL() << "expected InternalError";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("x.json"), std::string::npos) << e.what();
  }
}

TEST(FileUtil, MakeDirsCreatesParentsAndNamesFailures) {
  test::ScratchDir dir("fileutil");
  make_dirs(dir.file("a/b/c"));
  EXPECT_TRUE(fs::is_directory(dir.file("a/b/c")));
  make_dirs(dir.file("a/b/c"));  // existing is fine
  fsync_dir(dir.file("a/b"));
  test::write_all(dir.file("plain"), "x");
  try {
    make_dirs(dir.file("plain/sub"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("plain/sub"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_dirs(dir.file("plain")), InputError);
}

}  // namespace
}  // namespace streamq
