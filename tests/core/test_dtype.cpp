// DType: name/size table and the half / bfloat16 conversions, checked
// exhaustively over all 16-bit patterns and on hand-picked rounding ties.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "src/core/dtype.h"
#include "src/core/error.h"

namespace streamq {
namespace {

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

TEST(DType, NamesAndSizesRoundTrip) {
  const DType all[] = {DType::F32, DType::F16, DType::BF16, DType::F64,
                       DType::I32, DType::I16, DType::I8,   DType::U8};
  const std::size_t sizes[] = {4, 2, 2, 8, 4, 2, 1, 1};
  for (std::size_t i = 0; i < 8; ++i) {
    DType back = DType::U8;
    ASSERT_TRUE(dtype_from_name(dtype_name(all[i]), &back)) << dtype_name(all[i]);
    EXPECT_EQ(back, all[i]);
    EXPECT_EQ(dtype_size(all[i]), sizes[i]) << dtype_name(all[i]);
  }
  DType ignored;
  EXPECT_FALSE(dtype_from_name("F8_E4M3", &ignored));
  EXPECT_FALSE(dtype_from_name("f32", &ignored));  // the spelling is case-sensitive
}

// Every half value decodes to sign * mantissa * 2^exp computed independently,
// and encodes back to the same bits (NaNs stay NaN).
TEST(DType, F16AllPatternsRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const float f = f16_to_f32(bits);
    if (f16_is_nan(bits)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_TRUE(f16_is_nan(f32_to_f16(f))) << std::hex << h;
      continue;
    }
    const int exp = (h >> 10) & 0x1f;
    const int mant = h & 0x3ff;
    double expect = exp == 0    ? std::ldexp(mant, -24)
                    : exp == 31 ? INFINITY
                                : std::ldexp(1024 + mant, exp - 25);
    if (h & 0x8000u) expect = -expect;
    ASSERT_EQ(static_cast<double>(f), expect) << std::hex << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000u) != 0) << std::hex << h;
    ASSERT_EQ(f32_to_f16(f), bits) << std::hex << h;
  }
}

TEST(DType, BF16AllPatternsRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const float f = bf16_to_f32(bits);
    if (bf16_is_nan(bits)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_TRUE(bf16_is_nan(f32_to_bf16(f))) << std::hex << h;
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), bits) << std::hex << h;
  }
}

TEST(DType, F16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);               // tie, 1.0 is even: down
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);           // tie, 1+2^-10 is odd: up
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);    // just above the tie: up
  EXPECT_EQ(f32_to_f16(-(1.0f + 3 * 0x1p-11f)), 0xbc02);        // sign does not change rounding
  EXPECT_EQ(f32_to_f16((2.0f - 0x1p-10f) + 0x1p-11f), 0x4000);  // tie, odd: carries into the exponent
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);                       // largest finite half
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);                       // below the overflow tie
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                       // tie to even overflows to inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xfc00);
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);                       // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);                       // tie with 0: even is 0
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);                   // tie between 1 and 2 ulps: 2
  EXPECT_EQ(f32_to_f16(0x1p-25f + 0x1p-40f), 0x0001);            // above the tie
  EXPECT_EQ(f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400);            // subnormal rounding up to normal
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_TRUE(f16_is_nan(f32_to_f16(NAN)));
}

TEST(DType, BF16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);             // tie, even: down
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);         // tie, odd: up
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // above the tie
  EXPECT_EQ(f32_to_bf16(float_of(0x7f7fffffu)), 0x7f80);      // FLT_MAX rounds to inf
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(float_of(0x7f800001u))));  // low-bit NaN must not become inf
  EXPECT_TRUE(bf16_is_nan(f32_to_bf16(float_of(0xffc00000u))));
}

TEST(DType, ConvertArraysBothWays) {
  const std::vector<float> src = {0.0f, -1.5f, 3.140625f, 65504.0f, 0x1p-24f};
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    std::vector<unsigned char> buf(src.size() * dtype_size(t));
    convert_from_f32(t, src.data(), buf.data(), src.size());
    std::vector<float> back(src.size());
    convert_to_f32(t, buf.data(), back.data(), src.size());
    for (std::size_t i = 0; i < src.size(); ++i) {
      const float expect = t == DType::BF16 ? bf16_to_f32(f32_to_bf16(src[i])) : src[i];
      EXPECT_EQ(back[i], expect) << dtype_name(t) << " element " << i;
    }
  }
  float out = 0;
  const int8_t q = 1;
  EXPECT_THROW(convert_to_f32(DType::I8, &q, &out, 1), InternalError);
}

}  // namespace
}  // namespace streamq
