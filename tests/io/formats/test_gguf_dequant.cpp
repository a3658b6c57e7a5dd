// Dequantization of GGUF tensor types against hand-built blocks: the exact
// element layout of each format (Q4 nibble order, fp16 scales, subnormals)
// and random blocks checked against a float64 reference of the ggml formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "src/core/dtype.h"
#include "src/core/error.h"
#include "io/formats/gguf.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

void put_f16(std::string* s, float v) { test::GgufBuilder::put<uint16_t>(s, f32_to_f16(v)); }

std::vector<float> dequant(uint32_t type, const std::string& bytes, int64_t n) {
  std::vector<float> out(static_cast<std::size_t>(n), NAN);
  gguf_dequantize(type, bytes.data(), out.data(), n, "test");
  return out;
}

TEST(GgufDequant, Q4_0LowNibblesFirstHalfHighNibblesSecond) {
  std::string b;
  put_f16(&b, 0.5f);
  for (int j = 0; j < 16; ++j) b += static_cast<char>(j | ((15 - j) << 4));
  const auto x = dequant(ggml_type::Q4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(x[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(x[16 + j], (15 - j - 8) * 0.5f) << 16 + j;
  }
}

TEST(GgufDequant, Q4_1AddsTheMinimum) {
  std::string b;
  put_f16(&b, 0.25f);
  put_f16(&b, -3.0f);
  for (int j = 0; j < 16; ++j) b += static_cast<char>(j | ((15 - j) << 4));
  const auto x = dequant(ggml_type::Q4_1, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(x[j], j * 0.25f - 3.0f) << j;
    EXPECT_EQ(x[16 + j], (15 - j) * 0.25f - 3.0f) << 16 + j;
  }
}

TEST(GgufDequant, Q8_0SignedBytesTimesScale) {
  std::string b;
  put_f16(&b, 1.0f / 128);
  for (int j = 0; j < 32; ++j) b += static_cast<char>(static_cast<int8_t>(j * 8 - 128));
  const auto x = dequant(ggml_type::Q8_0, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(x[j], (j * 8 - 128) / 128.0f) << j;
}

TEST(GgufDequant, FloatTypesIncludingSubnormalsAndUnalignedData) {
  std::string f16 = "x";  // one byte of misalignment: general.alignment may be 1
  for (uint16_t h : {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x8000}) test::GgufBuilder::put<uint16_t>(&f16, h);
  std::vector<float> out(5);
  gguf_dequantize(ggml_type::F16, f16.data() + 1, out.data(), 5, "test");
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.5f, 65504.0f, std::ldexp(1.0f, -24), -0.0f}));
  EXPECT_TRUE(std::signbit(out[4]));
  std::string bf16;
  for (uint16_t h : {0x3F80, 0xC040, 0x7F7F}) test::GgufBuilder::put<uint16_t>(&bf16, h);
  EXPECT_EQ(dequant(ggml_type::BF16, bf16, 3), (std::vector<float>{1.0f, -3.0f, 0x1.FEp127f}));
  EXPECT_EQ(dequant(ggml_type::F32, test::f32_bytes({1.5f, -0.0f}), 2), (std::vector<float>{1.5f, -0.0f}));
}

// Random fp16 scale in +-[2^-10, 2^4]: with 11-bit mantissas the reference's
// float64 sums below stay exact, so one rounding to float is the only one.
float random_scale(std::mt19937_64& rng) {
  const float mag = std::ldexp(1.0f + static_cast<float>(rng() % 1024) / 1024, static_cast<int>(rng() % 15) - 10);
  return f16_to_f32(f32_to_f16(rng() % 2 ? mag : -mag));
}

TEST(GgufDequant, RandomBlocksMatchFloat64Reference) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (STREAMQ_TEST_SEED to replay)");
  std::mt19937_64 rng(seed);
  constexpr int kBlocks = 37;
  std::string q40, q41, q80;
  std::vector<double> r40, r41, r80;
  for (int b = 0; b < kBlocks; ++b) {
    const float d0 = random_scale(rng), d1 = random_scale(rng), m1 = random_scale(rng), d8 = random_scale(rng);
    put_f16(&q40, d0);
    put_f16(&q41, d1);
    put_f16(&q41, m1);
    put_f16(&q80, d8);
    uint8_t nib0[32], nib1[32];
    for (int j = 0; j < 32; ++j) {
      nib0[j] = static_cast<uint8_t>(rng() % 16);
      nib1[j] = static_cast<uint8_t>(rng() % 16);
    }
    for (int j = 0; j < 16; ++j) {
      q40 += static_cast<char>(nib0[j] | (nib0[j + 16] << 4));
      q41 += static_cast<char>(nib1[j] | (nib1[j + 16] << 4));
    }
    for (int j = 0; j < 32; ++j) {
      const int8_t q = static_cast<int8_t>(rng());
      q80 += static_cast<char>(q);
      r40.push_back((nib0[j] - 8.0) * d0);
      r41.push_back(nib1[j] * static_cast<double>(d1) + m1);
      r80.push_back(static_cast<double>(q) * d8);
    }
  }
  const struct {
    uint32_t type;
    const std::string& bytes;
    const std::vector<double>& ref;
  } cases[] = {{ggml_type::Q4_0, q40, r40}, {ggml_type::Q4_1, q41, r41}, {ggml_type::Q8_0, q80, r80}};
  for (const auto& c : cases) {
    SCOPED_TRACE(ggml_type_label(c.type));
    ASSERT_EQ(c.bytes.size(), kBlocks * ggml_type_traits(c.type)->bytes);
    const auto x = dequant(c.type, c.bytes, kBlocks * 32);
    for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], static_cast<float>(c.ref[i])) << "element " << i;
  }
}

TEST(GgufDequant, TypeTable) {
  EXPECT_EQ(ggml_type_label(ggml_type::Q4_1), "Q4_1");
  EXPECT_EQ(ggml_type_label(12), "Q4_K");
  EXPECT_EQ(ggml_type_label(5), "type 5");  // removed from ggml
  EXPECT_EQ(ggml_type_traits(ggml_type::Q8_0)->bytes, 34u);
  EXPECT_FALSE(gguf_can_dequantize(14));  // Q6_K
  std::vector<float> out(256);
  try {
    gguf_dequantize(14, std::string(210, '\0').data(), out.data(), 256, "file.gguf: tensor 'x'");
    ADD_FAILURE() << "Q6_K dequantized";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("file.gguf: tensor 'x': tensor type Q6_K is not supported"),
              std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace streamq
