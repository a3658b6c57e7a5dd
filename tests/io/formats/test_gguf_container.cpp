// GGUF container tests on synthetic files: every metadata value type, tensor
// layout and alignment, and malformed files (bad magic, versions, truncation
// at every byte, lengths beyond the file, bad tensor infos, overlaps), each of
// which must fail with an InputError naming the file and what was wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "src/core/error.h"
#include "io/formats/gguf.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

using test::GgufBuilder;

std::string write_tmp(const test::ScratchDir& dir, const std::string& bytes) {
  const std::string path = dir.file("model.gguf");
  test::write_all(path, bytes);
  return path;
}

// Opens `bytes` as a file and expects an InputError whose message names the
// file and contains every needle.
void expect_input_error(const std::string& bytes, const std::vector<std::string>& needles) {
  test::ScratchDir dir("gguf-bad");
  const std::string path = write_tmp(dir, bytes);
  try {
    GgufFile::open(path);
    ADD_FAILURE() << "opened without error; expected one mentioning '" << needles.front() << "'";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "missing '" << n << "' in: " << msg;
  }
}

// A small valid file: metadata of a few kinds and two F32 tensors.
GgufBuilder small_file() {
  GgufBuilder b;
  b.kv_str("general.architecture", "test").kv_u32("test.n", 7);
  b.tensor("a", {4, 3}, ggml_type::F32, test::f32_bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  b.tensor("b", {2}, ggml_type::F32, test::f32_bytes({-1.5f, 2.5f}));
  return b;
}

TEST(GgufContainer, ReadsEveryMetadataValueType) {
  GgufBuilder b;
  std::string nested;  // array of 2 arrays of u8
  GgufBuilder::put<uint32_t>(&nested, 9);
  GgufBuilder::put<uint64_t>(&nested, 2);
  for (int i = 0; i < 2; ++i) {
    GgufBuilder::put<uint32_t>(&nested, 0);
    GgufBuilder::put<uint64_t>(&nested, 3);
    nested += std::string{char(i), char(i + 1), char(i + 2)};
  }
  b.kv_raw("u8", 0, std::string(1, char(200))).kv_raw("i8", 1, std::string(1, char(-5)));
  b.kv_raw("u16", 2, std::string("\x34\x12", 2)).kv_raw("i16", 3, std::string("\xfe\xff", 2));
  b.kv_u32("u32", 4000000000u).kv_i32("i32", -7).kv_f32("f32", 0.25f).kv_bool("bool", true);
  b.kv_str("str", "h\xc3\xa9llo").kv_u64("u64", 1ull << 40);
  std::string i64, f64;
  GgufBuilder::put<int64_t>(&i64, -(1ll << 50));
  GgufBuilder::put<double>(&f64, 1e-300);
  b.kv_raw("i64", 11, i64).kv_raw("f64", 12, f64);
  b.kv_str_array("strs", {"a", "", "ccc"}).kv_i32_array("ints", {3, -4}).kv_raw("nested", 9, nested);
  test::ScratchDir dir("gguf");
  const auto f = GgufFile::open(write_tmp(dir, b.bytes()));

  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), 15u);
  EXPECT_EQ(f->meta_int("u8"), 200);
  EXPECT_EQ(f->meta_int("i8"), -5);
  EXPECT_EQ(f->meta_int("u16"), 0x1234);
  EXPECT_EQ(f->meta_int("i16"), -2);
  EXPECT_EQ(f->meta_int("u32"), 4000000000ll);
  EXPECT_EQ(f->meta_int("i32"), -7);
  EXPECT_EQ(f->meta_double("f32", 0), 0.25);
  EXPECT_TRUE(f->meta_bool("bool", false));
  EXPECT_EQ(f->meta_string("str"), "h\xc3\xa9llo");
  EXPECT_EQ(f->meta_int("u64"), 1ll << 40);
  EXPECT_EQ(f->meta_int("i64"), -(1ll << 50));
  EXPECT_EQ(f->meta_double("f64", 0), 1e-300);
  EXPECT_EQ(f->find("strs")->as_string_array("strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f->find("ints")->as_int_array("ints"), (std::vector<int64_t>{3, -4}));
  const GgufValue* n = f->find("nested");
  ASSERT_EQ(n->arrays.size(), 2u);
  EXPECT_EQ(n->arrays[1].as_int_array("nested[1]"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(f->meta_int("absent", 42), 42);
  EXPECT_TRUE(f->tensors().empty());

  // A type mismatch names the file and key.
  try {
    f->meta_int("str");
    ADD_FAILURE() << "string read as an integer";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("metadata 'str' is string, expected an integer"), std::string::npos);
  }
  EXPECT_THROW(f->meta_string("missing"), InputError);
}

TEST(GgufContainer, TensorsLayoutAlignmentAndVersion2) {
  for (uint32_t version : {2u, 3u}) {
    for (uint64_t align : {32ull, 64ull, 1ull}) {
      GgufBuilder b = small_file();
      b.version = version;
      b.alignment = align;
      if (align != 32) b.kv_u32("general.alignment", static_cast<uint32_t>(align));
      test::ScratchDir dir("gguf");
      const auto f = GgufFile::open(write_tmp(dir, b.bytes()));
      EXPECT_EQ(f->version(), version);
      EXPECT_EQ(f->alignment(), align);
      EXPECT_EQ(f->data_start() % align, 0u);
      ASSERT_EQ(f->tensors().size(), 2u);
      const GgufTensorInfo* a = f->find_tensor("a");
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(a->ne, (std::vector<int64_t>{4, 3}));
      EXPECT_EQ(a->nbytes, 48u);
      EXPECT_EQ(f->read_f32(*a)[11], 11.0f);
      EXPECT_EQ(f->read_f32(*f->find_tensor("b")), (std::vector<float>{-1.5f, 2.5f}));
      EXPECT_EQ(f->find_tensor("c"), nullptr);
    }
  }
}

TEST(GgufMalformed, BadMagicAndVersions) {
  std::string bytes = small_file().bytes();
  bytes[0] = 'X';
  expect_input_error(bytes, {"bad magic 'XGUF'", "not a GGUF file"});
  expect_input_error("GGU", {"truncated", "magic"});
  expect_input_error("", {"empty file"});
  GgufBuilder v1 = small_file();
  v1.version = 1;
  expect_input_error(v1.bytes(), {"version 1 is not supported"});
  GgufBuilder v9 = small_file();
  v9.version = 9;
  expect_input_error(v9.bytes(), {"version 9 is not supported"});
  GgufBuilder be = small_file();
  be.version = 0x03000000;  // 3 as a big-endian writer stores it
  expect_input_error(be.bytes(), {"big-endian"});
}

TEST(GgufMalformed, TruncatedAtEveryByte) {
  const std::string full = small_file().bytes();
  test::ScratchDir dir("gguf-cut");
  for (std::size_t n = 0; n < full.size(); ++n) {
    SCOPED_TRACE("file cut to " + std::to_string(n) + " bytes");
    const std::string path = write_tmp(dir, full.substr(0, n));
    EXPECT_THROW(GgufFile::open(path), InputError);
  }
  expect_input_error(full.substr(0, 10), {"truncated", "tensor count at byte 8"});
  expect_input_error(full.substr(0, full.size() - 1), {"tensor 'b'", "beyond", "truncated"});
}

TEST(GgufMalformed, LengthsBeyondTheFile) {
  std::string huge_string;
  GgufBuilder::put<uint64_t>(&huge_string, 1ull << 40);
  expect_input_error(GgufBuilder().kv_raw("name", 8, huge_string + "abc").bytes(),
                     {"metadata 'name'", "1099511627776 bytes", "truncated"});
  std::string huge_array;
  GgufBuilder::put<uint32_t>(&huge_array, 4);
  GgufBuilder::put<uint64_t>(&huge_array, 1ull << 60);
  expect_input_error(GgufBuilder().kv_raw("arr", 9, huge_array).bytes(), {"metadata 'arr'", "claims", "elements"});
  std::string huge_key;
  GgufBuilder::put<uint64_t>(&huge_key, ~0ull);
  std::string bytes = "GGUF";
  GgufBuilder::put<uint32_t>(&bytes, 3);
  GgufBuilder::put<uint64_t>(&bytes, 0);
  GgufBuilder::put<uint64_t>(&bytes, 1);
  expect_input_error(bytes + huge_key + std::string(16, 'k'), {"metadata entry 0 key", "truncated"});
  std::string counts = "GGUF";
  GgufBuilder::put<uint32_t>(&counts, 3);
  GgufBuilder::put<uint64_t>(&counts, 1ull << 40);
  GgufBuilder::put<uint64_t>(&counts, 0);
  expect_input_error(counts, {"tensor count 1099511627776"});
}

TEST(GgufMalformed, BadMetadata) {
  expect_input_error(GgufBuilder().kv_raw("k", 13, "xxxx").bytes(), {"metadata 'k'", "unknown value type 13"});
  expect_input_error(GgufBuilder().kv_u32("k", 1).kv_u32("k", 2).bytes(), {"metadata 'k' appears twice"});
  expect_input_error(small_file().kv_u32("general.alignment", 3).bytes(), {"general.alignment", "power of two"});
  expect_input_error(small_file().kv_str("general.alignment", "32").bytes(),
                     {"general.alignment", "expected an integer"});
  // Arrays of arrays nested past the limit.
  std::string deep;
  for (int i = 0; i < 9; ++i) {
    GgufBuilder::put<uint32_t>(&deep, 9);
    GgufBuilder::put<uint64_t>(&deep, 1);
  }
  GgufBuilder::put<uint32_t>(&deep, 0);
  GgufBuilder::put<uint64_t>(&deep, 0);
  expect_input_error(GgufBuilder().kv_raw("deep", 9, deep).bytes(), {"metadata 'deep'", "nested deeper"});
}

TEST(GgufMalformed, BadTensorInfos) {
  const std::string f4(64, '\0');
  auto one = [&](GgufBuilder::Tensor t) { return GgufBuilder().tensor(std::move(t)).bytes(); };
  expect_input_error(one({"w", {4}, 77, f4, std::nullopt}), {"tensor 'w'", "unknown tensor type id 77"});
  expect_input_error(one({"w", {4}, 4, f4, std::nullopt}), {"tensor 'w'", "unknown tensor type id 4"});  // removed Q4_2
  expect_input_error(one({"w", {1, 1, 1, 1, 1}, 0, f4, std::nullopt}), {"tensor 'w'", "n_dims 5"});
  expect_input_error(one({"w", {1ull << 32, 1ull << 32, 1ull << 32}, 0, f4, std::nullopt}),
                     {"tensor 'w'", "overflow"});
  expect_input_error(one({"w", {1ull << 62, 2}, 0, f4, std::nullopt}), {"tensor 'w'", "overflow"});
  expect_input_error(one({"w", {4}, 0, f4, 1ull << 40}), {"tensor 'w'", "beyond", "data section"});
  expect_input_error(one({"w", {4}, 0, f4, 4}), {"tensor 'w'", "offset 4 is not a multiple of the alignment 32"});
  expect_input_error(one({"w", {16}, ggml_type::Q4_0, f4, std::nullopt}), {"tensor 'w'", "block size 32"});
  expect_input_error(GgufBuilder()
                         .tensor({"a", {8}, 0, std::string(32, '\0'), std::nullopt})
                         .tensor({"b", {8}, 0, std::string(32, '\0'), 0})
                         .bytes(),
                     {"overlaps"});
  expect_input_error(GgufBuilder()
                         .tensor({"a", {16}, 0, std::string(64, '\0'), std::nullopt})
                         .tensor({"b", {8}, 0, std::string(32, '\0'), 32})
                         .bytes(),
                     {"tensor 'b' overlaps tensor 'a'"});
  expect_input_error(GgufBuilder().tensor("a", {4}, 0, f4).tensor("a", {4}, 0, f4).bytes(),
                     {"tensor 'a' appears twice"});
}

TEST(GgufMalformed, UnsupportedTypeFailsOnReadNamingTensorAndType) {
  // Q4_K is a valid container type (144-byte blocks of 256) that streamq does not dequantize.
  test::ScratchDir dir("gguf");
  const std::string bytes = GgufBuilder().tensor("blk.0.x", {256}, 12, std::string(144, '\0')).bytes();
  const auto f = GgufFile::open(write_tmp(dir, bytes));
  try {
    f->read_f32(f->tensors()[0]);
    ADD_FAILURE() << "Q4_K dequantized";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tensor 'blk.0.x'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Q4_K is not supported"), std::string::npos) << msg;
  }
}

// Random byte corruption of a valid file either still opens or throws
// InputError: never a crash, a hang or another exception type.
TEST(GgufMalformed, RandomCorruptionFailsCleanly) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (STREAMQ_TEST_SEED to replay)");
  std::mt19937_64 rng(seed);
  const std::string full = small_file().kv_str_array("list", {"x", "yy"}).bytes();
  test::ScratchDir dir("gguf-fuzz");
  for (int iter = 0; iter < 300; ++iter) {
    std::string bytes = full;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    const std::string path = write_tmp(dir, bytes);
    try {
      const auto f = GgufFile::open(path);
      for (const auto& t : f->tensors()) {
        if (gguf_can_dequantize(t.type)) (void)f->read_f32(t);
      }
    } catch (const InputError&) {
    }
  }
}

}  // namespace
}  // namespace streamq
