// safetensors reading: the real demo model, and one InputError per kind of
// malformed file or index, each naming the file (and tensor). Writer tests are
// in test_safetensors_writer.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "io/formats/safetensors.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A file from a header text and data bytes (no validation: tests break things).
std::string st_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// A valid file holding F32 tensors of the given sizes, contiguous in order.
std::string st_valid(const std::vector<std::pair<std::string, int>>& tensors) {
  json h = json::object();
  uint64_t at = 0;
  for (const auto& [name, n] : tensors) {
    h[name] = {{"dtype", "F32"}, {"shape", {n}}, {"data_offsets", {at, at + 4 * n}}};
    at += 4 * n;
  }
  return st_bytes(h.dump(), std::string(at, '\x01'));
}

template <typename Fn>
void expect_input_error(Fn fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    for (const auto& frag : fragments)
      EXPECT_NE(std::string(e.what()).find(frag), std::string::npos)
          << "message '" << e.what() << "' lacks '" << frag << "'";
  }
}

// ---- the real demo model

TEST(Safetensors, ReadsDemoModel) {
  const auto m = SafetensorsModel::open(test::demo_model_dir());
  const auto names = m->tensor_names();
  ASSERT_EQ(names.size(), 48u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  uint64_t sum = 0;
  for (const auto& n : names) {
    EXPECT_EQ(m->info(n).dtype, DType::F32) << n;
    sum += m->info(n).nbytes;
  }
  EXPECT_EQ(m->total_bytes(), sum);
  const std::string down = "model.layers.0.mlp.down_proj.weight";
  ASSERT_TRUE(m->has(down));
  EXPECT_EQ(m->info(down).shape, (std::vector<int64_t>{64, 172}));
  const std::vector<float> w = m->read_f32(down, 64 * 172);
  ASSERT_EQ(w.size(), 64u * 172);
  double sq = 0;
  for (float v : w) {
    ASSERT_TRUE(std::isfinite(v));
    sq += double(v) * v;
  }
  EXPECT_GT(sq, 0.0);
  expect_input_error([&] { m->read_f32(down, 17); }, {"model.safetensors", down, "17"});
  expect_input_error([&] { m->info("no.such.tensor"); }, {"stories260K", "'no.such.tensor'"});
}

TEST(Safetensors, TruncatedDemoModelNamesLastTensor) {
  const std::string src = test::demo_model_dir() + "/model.safetensors";
  std::string last;
  {
    const auto f = SafetensorsFile::open(src);
    uint64_t end = 0;
    for (const auto& t : f->tensors())
      if (t.offset + t.nbytes > end) end = t.offset + t.nbytes, last = t.name;
  }
  test::ScratchDir dir("st-trunc");
  std::string bytes = test::read_all(src);
  bytes.pop_back();
  test::write_all(dir.file("model.safetensors"), bytes);
  expect_input_error([&] { SafetensorsModel::open(dir.path()); },
                     {"model.safetensors", "'" + last + "'", "truncated"});
}

// ---- malformed single files: one case per check

struct BadFile {
  const char* label;
  std::string bytes;
  std::vector<std::string> fragments;  // besides the file name
};

std::string entry(const std::string& name, const std::string& body) {
  return "{\"" + name + "\":" + body + "}";
}

std::vector<BadFile> bad_files() {
  const std::string e8(8, '\0');
  return {
      {"Empty", "", {"too short"}},
      {"FiveBytes", "abcde", {"too short"}},
      {"ZeroHeaderLength", le64(0) + "{}", {"header length is 0"}},
      {"HugeHeaderLength", le64(1ull << 60) + "{}", {"exceeds"}},
      {"HeaderBeyondFile", le64(100) + "{}", {"beyond file size"}},
      {"BadJson", st_bytes("{\"w\": {", ""), {"not valid JSON"}},
      {"JsonArray", st_bytes("[1, 2]", ""), {"expected an object"}},
      {"EntryNotObject", st_bytes(entry("w", "3"), ""), {"'w'", "expected an object"}},
      {"DtypeNotString", st_bytes(entry("w", R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})"), e8),
       {"'w'", "'dtype'"}},
      {"UnknownDtype", st_bytes(entry("w", R"({"dtype":"F8","shape":[1],"data_offsets":[0,1]})"), e8),
       {"'w'", "unknown dtype 'F8'"}},
      {"MissingShape", st_bytes(entry("w", R"({"dtype":"F32","data_offsets":[0,4]})"), e8), {"'w'", "'shape'"}},
      {"MissingDataOffsets", st_bytes(entry("w", R"({"dtype":"F32","shape":[1]})"), e8),
       {"'w'", "'data_offsets'"}},
      {"SizeMismatch", st_bytes(entry("w", R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})"), e8 + e8 + e8),
       {"'w'", "needs 24"}},
      {"BeginAfterEnd", st_bytes(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), e8 + e8),
       {"'w'", "begin after end"}},
      {"OffsetsNotPair", st_bytes(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), e8),
       {"'w'", "not a pair"}},
      {"OffsetsFloat", st_bytes(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0.0,4.0]})"), e8),
       {"'w'", "not a pair"}},
      {"OffsetsNegative", st_bytes(entry("w", R"({"dtype":"U8","shape":[0],"data_offsets":[-1,-1]})"), e8),
       {"'w'", "not a pair"}},
      {"EndBeyondData", st_bytes(entry("w", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"), e8),
       {"'w'", "end beyond", "truncated"}},
      {"NegativeDim", st_bytes(entry("w", R"({"dtype":"F32","shape":[-1,4],"data_offsets":[0,0]})"), e8),
       {"'w'", "non-negative"}},
      {"NumelOverflow",
       st_bytes(entry("w", R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]})"), e8),
       {"'w'", "overflow"}},
      {"ByteSizeOverflow",
       st_bytes(entry("w", R"({"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]})"), e8),
       {"'w'", "overflows 64 bits"}},
      {"Overlap",
       st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                e8 + e8),
       {"'a'", "'b'", "overlap"}},
      {"MetadataNotStrings",
       st_bytes(R"({"__metadata__":{"n":1},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", e8),
       {"__metadata__", "'n'"}},
      {"DuplicateTensor",
       st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                e8),
       {"'w'", "twice"}},
  };
}

class SafetensorsMalformed : public ::testing::TestWithParam<BadFile> {};

TEST_P(SafetensorsMalformed, ThrowsInputErrorNamingFile) {
  test::ScratchDir dir("st-bad");
  const std::string path = dir.file("bad_file.safetensors");
  test::write_all(path, GetParam().bytes);
  std::vector<std::string> frags = GetParam().fragments;
  frags.push_back("bad_file.safetensors");
  expect_input_error([&] { SafetensorsFile::open(path); }, frags);
  // Through the directory entry point too: a single *.safetensors is accepted.
  expect_input_error([&] { SafetensorsModel::open(dir.path()); }, frags);
}

INSTANTIATE_TEST_SUITE_P(Safetensors, SafetensorsMalformed, ::testing::ValuesIn(bad_files()),
                         [](const auto& info) { return std::string(info.param.label); });

// ---- model directories and sharded indexes

// dir/s1.safetensors {a, b}; the index text is supplied by each test.
struct ShardedDir {
  test::ScratchDir root{"st-index"};
  std::string dir = root.file("model");
  ShardedDir() {
    fs::create_directory(dir);
    test::write_all(dir + "/s1.safetensors", st_valid({{"a", 2}, {"b", 3}}));
  }
  void index(const json& weight_map) {
    test::write_all(dir + "/model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
  }
};

TEST(Safetensors, IndexAcceptsShardsInsideDir) {
  ShardedDir d;
  fs::create_directory(d.dir + "/sub");
  test::write_all(d.dir + "/sub/s2.safetensors", st_valid({{"c", 1}}));
  fs::create_symlink("sub/s2.safetensors", d.dir + "/link.safetensors");  // stays inside: fine
  test::write_all(d.dir + "/s3.safetensors", st_valid({{"d", 4}}));
  test::write_all(d.dir + "/sub/s4.safetensors", st_valid({{"e", 2}}));
  d.index({{"a", "s1.safetensors"}, {"c", "link.safetensors"}, {"d", "./s3.safetensors"},
           {"e", "sub/s4.safetensors"}});
  const auto m = SafetensorsModel::open(d.dir);
  // b is not in the weight_map but sits in a listed shard: kept.
  EXPECT_EQ(m->tensor_names(), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(m->read_f32("d").size(), 4u);
}

TEST(Safetensors, IndexRejectsAbsoluteShard) {
  ShardedDir d;
  d.index({{"a", d.dir + "/s1.safetensors"}});
  expect_input_error([&] { SafetensorsModel::open(d.dir); }, {"model.safetensors.index.json", "absolute"});
}

TEST(Safetensors, IndexRejectsDotDotShard) {
  ShardedDir d;
  test::write_all(d.root.file("x.safetensors"), st_valid({{"a", 2}}));
  for (const char* shard : {"../x.safetensors", "sub/../s1.safetensors"}) {
    d.index({{"a", shard}});
    expect_input_error([&] { SafetensorsModel::open(d.dir); },
                       {"model.safetensors.index.json", shard, "'..'"});
  }
}

TEST(Safetensors, IndexRejectsSymlinkEscapingDir) {
  ShardedDir d;
  test::write_all(d.root.file("outside.safetensors"), st_valid({{"a", 2}}));
  fs::create_symlink("../outside.safetensors", d.dir + "/escape.safetensors");
  d.index({{"a", "escape.safetensors"}});
  expect_input_error([&] { SafetensorsModel::open(d.dir); },
                     {"model.safetensors.index.json", "escape.safetensors", "outside the model directory"});
}

TEST(Safetensors, IndexRejectsTensorMissingFromShard) {
  ShardedDir d;
  d.index({{"a", "s1.safetensors"}, {"zz", "s1.safetensors"}});
  expect_input_error([&] { SafetensorsModel::open(d.dir); },
                     {"model.safetensors.index.json", "'zz'", "s1.safetensors"});
}

TEST(Safetensors, IndexRejectsMissingShardFile) {
  ShardedDir d;
  d.index({{"a", "s1.safetensors"}, {"q", "nope-00002.safetensors"}});
  expect_input_error([&] { SafetensorsModel::open(d.dir); },
                     {"model.safetensors.index.json", "nope-00002.safetensors"});
}

TEST(Safetensors, IndexRejectsTensorInTwoShards) {
  ShardedDir d;
  test::write_all(d.dir + "/s2.safetensors", st_valid({{"c", 1}, {"a", 2}}));
  d.index({{"a", "s1.safetensors"}, {"c", "s2.safetensors"}});
  expect_input_error([&] { SafetensorsModel::open(d.dir); }, {"'a'", "s1.safetensors", "s2.safetensors"});
}

TEST(Safetensors, IndexRejectsBadJson) {
  ShardedDir d;
  test::write_all(d.dir + "/model.safetensors.index.json", "{\"weight_map\": [");
  expect_input_error([&] { SafetensorsModel::open(d.dir); }, {"model.safetensors.index.json", "JSON"});
  test::write_all(d.dir + "/model.safetensors.index.json", "{\"weight_map\": {\"a\": 3}}");
  expect_input_error([&] { SafetensorsModel::open(d.dir); }, {"model.safetensors.index.json", "'a'"});
}

TEST(Safetensors, DirectoryWithoutUsableFiles) {
  test::ScratchDir dir("st-dir");
  expect_input_error([&] { SafetensorsModel::open(dir.file("absent")); }, {"absent", "does not exist"});
  expect_input_error([&] { SafetensorsModel::open(dir.path()); }, {dir.path(), "no model.safetensors"});
  test::write_all(dir.file("one.safetensors"), st_valid({{"x", 1}}));
  EXPECT_TRUE(SafetensorsModel::open(dir.path())->has("x"));  // the only one: accepted
  test::write_all(dir.file("two.safetensors"), st_valid({{"y", 1}}));
  expect_input_error([&] { SafetensorsModel::open(dir.path()); }, {"one.safetensors", "two.safetensors"});
}

}  // namespace
}  // namespace streamq
