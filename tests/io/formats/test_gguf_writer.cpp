// The GGUF writer: block encoders against streamq's own GGUF dequantizer
// (ggml's formulas), a written file parsed back by the validating GGUF reader
// (metadata, tensor infos, alignment, data), and staging (nothing at the path
// until finish()).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/formats/gguf.h"
#include "io/formats/gguf_writer.h"
#include "tests/support/test_util.h"

namespace fs = std::filesystem;

namespace streamq {
namespace {

uint16_t random_d(std::mt19937& rng) {
  std::uniform_real_distribution<float> u(1e-4f, 0.2f);
  return f32_to_f16(u(rng));
}

TEST(GgufWriter, BlockEncodersDequantizeToTheGridValues) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 50; ++trial) {
    uint8_t c4[32], c8[32];
    for (int j = 0; j < 32; ++j) {
      c4[j] = static_cast<uint8_t>(rng() % 16);
      c8[j] = static_cast<uint8_t>(rng() % 256);
    }
    const uint16_t d = random_d(rng);
    const uint16_t m = f32_to_f16(-0.37f * static_cast<float>(trial % 5));
    const float df = f16_to_f32(d), mf = f16_to_f32(m);
    uint8_t b0[18], b1[20], b8[34];
    float x[32];
    ggml_encode_q4_0(c4, d, b0);
    gguf_dequantize(ggml_type::Q4_0, b0, x, 32, "q4_0");
    for (int j = 0; j < 32; ++j) ASSERT_EQ(x[j], df * static_cast<float>(c4[j] - 8)) << j;
    ggml_encode_q4_1(c4, d, m, b1);
    gguf_dequantize(ggml_type::Q4_1, b1, x, 32, "q4_1");
    for (int j = 0; j < 32; ++j) ASSERT_EQ(x[j], df * static_cast<float>(c4[j]) + mf) << j;
    ggml_encode_q8_0(c8, d, b8);
    gguf_dequantize(ggml_type::Q8_0, b8, x, 32, "q8_0");
    for (int j = 0; j < 32; ++j) ASSERT_EQ(x[j], df * static_cast<float>(c8[j] - 128)) << j;
  }
  // ggml's nibble order: byte j = element j (low) | element j + 16 (high).
  uint8_t c[32] = {}, b[18];
  c[0] = 0x3;
  c[16] = 0xA;
  ggml_encode_q4_0(c, 0, b);
  EXPECT_EQ(b[2], 0xA3);
}

TEST(GgufWriter, FileParsesBackWithMetadataTensorsAndAlignment) {
  test::ScratchDir dir("gguf-writer");
  const std::string path = dir.file("t.gguf");
  std::vector<float> odd(7);  // 28 bytes: the next tensor needs padding to 32
  for (int i = 0; i < 7; ++i) odd[i] = 0.5f * static_cast<float>(i) - 1;
  uint8_t codes[64];
  for (int i = 0; i < 64; ++i) codes[i] = static_cast<uint8_t>(i % 16);
  uint8_t blocks[36];
  ggml_encode_q4_0(codes, f32_to_f16(0.25f), blocks);
  ggml_encode_q4_0(codes + 32, f32_to_f16(0.5f), blocks + 18);
  {
    GgufWriter w(path);
    w.kv_str("general.architecture", "test");
    w.kv_u32("test.u32", 7);
    w.kv_f32("test.f32", 1.5f);
    w.kv_bool("test.bool", true);
    w.kv_str_array("test.strs", {"a", "bc"});
    w.kv_i32_array("test.i32s", {-1, 2});
    w.add_tensor("odd", {7}, ggml_type::F32);
    w.add_tensor("q", {32, 2}, ggml_type::Q4_0);
    w.write_tensor_data("odd", odd.data(), 12);  // in pieces
    w.write_tensor_data("odd", odd.data() + 3, 16);
    w.write_tensor_data("q", blocks, sizeof blocks);
    EXPECT_FALSE(fs::exists(path));  // staged until finish()
    w.finish();
  }
  const auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->meta_string("general.architecture"), "test");
  EXPECT_EQ(f->meta_int("test.u32"), 7);
  EXPECT_EQ(f->meta_double("test.f32", 0), 1.5);
  EXPECT_TRUE(f->meta_bool("test.bool", false));
  EXPECT_EQ(f->find("test.strs")->as_string_array("strs"), (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(f->find("test.i32s")->as_int_array("i32s"), (std::vector<int64_t>{-1, 2}));
  ASSERT_EQ(f->tensors().size(), 2u);
  const GgufTensorInfo* q = f->find_tensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->ne, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ((q->offset - f->data_start()) % 32, 0u);
  EXPECT_EQ(f->read_f32(*f->find_tensor("odd")), odd);
  const std::vector<float> qv = f->read_f32(*q);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(qv[i], (i < 32 ? 0.25f : 0.5f) * static_cast<float>(codes[i] - 8));
}

TEST(GgufWriter, UnfinishedWriterLeavesNothing) {
  test::ScratchDir dir("gguf-writer-abort");
  const std::string path = dir.file("t.gguf");
  {
    GgufWriter w(path);
    w.kv_str("general.architecture", "test");
    w.add_tensor("a", {4}, ggml_type::F32);
    const float v[2] = {1, 2};
    w.write_tensor_data("a", v, sizeof v);
    EXPECT_THROW(w.finish(), InternalError);  // half a tensor
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

}  // namespace
}  // namespace streamq
