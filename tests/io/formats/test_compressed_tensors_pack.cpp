// compressed-tensors pack-quantized bit packing: the package's documented
// example word, the word layout value by value for every supported width,
// zero points packed down the output dimension, and round trips.
#include <gtest/gtest.h>

#include <random>

#include "src/core/error.h"
#include "io/formats/compressed_tensors_pack.h"

namespace streamq {
namespace {

// pack_to_int32's docstring: 8-bit signed [1, 2] -> unsigned [129, 130] ->
// one word 0x00008281 = 33409 (lowest bits first).
TEST(CompressedTensorsPack, DocumentedEightBitExample) {
  const uint8_t v[2] = {129, 130};
  const auto w = ct_pack_rows(v, 1, 2, 8);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], 33409);
}

TEST(CompressedTensorsPack, ValueJOfAWordSitsAtBitsJTimesWidth) {
  for (int bits : {2, 4, 8}) {
    SCOPED_TRACE(bits);
    const int f = 32 / bits;
    const int64_t cols = 3 * f + 1;  // a padded last word
    std::vector<uint8_t> v(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) v[i] = static_cast<uint8_t>((i * 7 + 3) % (1 << bits));
    const auto w = ct_pack_rows(v.data(), 1, cols, bits);
    ASSERT_EQ(static_cast<int64_t>(w.size()), ct_packed_words(cols, bits));
    ASSERT_EQ(w.size(), 4u);
    for (int64_t i = 0; i < cols; ++i)
      EXPECT_EQ((static_cast<uint32_t>(w[i / f]) >> ((i % f) * bits)) & ((1u << bits) - 1), v[i]) << i;
    EXPECT_EQ(static_cast<uint32_t>(w[3]) >> bits, 0u);  // padding values are zero
  }
}

TEST(CompressedTensorsPack, ZeroPointsPackDownTheRows) {
  // [rows=8, cols=2] at 4 bits: one word per column holding rows 0..7.
  std::vector<uint8_t> z(16);
  for (int r = 0; r < 8; ++r) {
    z[r * 2] = static_cast<uint8_t>(r);
    z[r * 2 + 1] = static_cast<uint8_t>(15 - r);
  }
  const auto w = ct_pack_cols(z.data(), 8, 2, 4);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(static_cast<uint32_t>(w[0]), 0x76543210u);
  EXPECT_EQ(static_cast<uint32_t>(w[1]), 0x89ABCDEFu);
}

TEST(CompressedTensorsPack, RoundTripsEveryWidthAndOddShape) {
  std::mt19937 rng(7);
  for (int bits : {1, 2, 4, 8})
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{3, 37}, {5, 64}, {1, 1}}) {
      std::vector<uint8_t> v(static_cast<size_t>(rows * cols));
      for (auto& x : v) x = static_cast<uint8_t>(rng() % (1u << bits));
      EXPECT_EQ(ct_unpack_rows(ct_pack_rows(v.data(), rows, cols, bits).data(), rows, cols, bits), v);
      EXPECT_EQ(ct_unpack_cols(ct_pack_cols(v.data(), rows, cols, bits).data(), rows, cols, bits), v);
    }
}

TEST(CompressedTensorsPack, RefusesWidthsThePackageReleasesPackDifferently) {
  const uint8_t v[1] = {1};
  EXPECT_THROW(ct_pack_rows(v, 1, 1, 3), InternalError);
  const uint8_t big[1] = {16};
  EXPECT_THROW(ct_pack_rows(big, 1, 1, 4), InternalError);
}

}  // namespace
}  // namespace streamq
