// GPTQ bit packing against a bit-by-bit reference and against the 3-bit
// word layout AutoGPTQ's pack() writes (docs/gptq-format.md).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "src/core/error.h"
#include "io/formats/gptq_pack.h"

namespace streamq {
namespace {

// Reference: bit t of value j goes to stream bit j * bits + t, i.e. bit
// (p % 32) of word p / 32. Sets one bit at a time, no accumulator.
std::vector<uint32_t> reference_pack(const std::vector<uint8_t>& v, int bits) {
  std::vector<uint32_t> w((v.size() * bits + 31) / 32, 0u);
  for (size_t j = 0; j < v.size(); ++j)
    for (int t = 0; t < bits; ++t)
      if ((v[j] >> t) & 1u) {
        const size_t p = j * bits + t;
        w[p / 32] |= 1u << (p % 32);
      }
  return w;
}

std::vector<uint8_t> random_values(std::mt19937_64& rng, size_t n, int bits) {
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng() % (1u << bits));
  return v;
}

TEST(GptqPack, StreamMatchesBitByBitReferenceForEveryWidth) {
  std::mt19937_64 rng(11);
  for (int bits : {2, 3, 4, 8}) {
    for (size_t n : {1u, 7u, 10u, 11u, 21u, 22u, 31u, 32u, 33u, 64u, 96u, 173u}) {
      SCOPED_TRACE("bits=" + std::to_string(bits) + " n=" + std::to_string(n));
      const std::vector<uint8_t> v = random_values(rng, n, bits);
      const std::vector<uint32_t> ref = reference_pack(v, bits);
      ASSERT_EQ(gptq_packed_words(static_cast<int64_t>(n), bits), static_cast<int64_t>(ref.size()));
      std::vector<uint32_t> w(ref.size(), 0xdeadbeefu);  // poisoned: every word must be written
      gptq_pack_stream(v.data(), 1, static_cast<int64_t>(n), bits, w.data(), 1);
      EXPECT_EQ(w, ref);
      std::vector<uint8_t> back(n, 0xff);
      gptq_unpack_stream(w.data(), 1, static_cast<int64_t>(n), bits, back.data(), 1);
      EXPECT_EQ(back, v);
    }
  }
}

TEST(GptqPack, ThreeBitWordsFollowAutoGptqLayout) {
  // 32 values fill 3 words; AutoGPTQ's pack(): word 0 holds values 0..9 at
  // 3 i and the low 2 bits of value 10 at 30; word 1 the top bit of value 10
  // at 0, values 11..20 at 3 (i - 11) + 1 and the low bit of value 21 at 31;
  // word 2 the top 2 bits of value 21 at 0 and values 22..31 at 3 (i - 22) + 2.
  std::vector<uint8_t> v(32, 0);
  v[10] = 0b101;
  v[21] = 0b011;
  v[0] = 7;
  v[31] = 6;
  std::vector<uint32_t> w(3, 0);
  gptq_pack_stream(v.data(), 1, 32, 3, w.data(), 1);
  EXPECT_EQ(w[0], 7u | (0b01u << 30));
  EXPECT_EQ(w[1], 0b1u | (1u << 31));
  EXPECT_EQ(w[2], 0b01u | (6u << 29));
}

TEST(GptqPack, FourBitWordHoldsEightValuesLowestFirst) {
  const std::vector<uint8_t> v{1, 2, 3, 4, 5, 6, 7, 15};
  uint32_t w = 0;
  gptq_pack_stream(v.data(), 1, 8, 4, &w, 1);
  EXPECT_EQ(w, 0xF7654321u);
}

TEST(GptqPack, QweightAndQzerosRoundTripWithOddOutputCounts) {
  std::mt19937_64 rng(5);
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t out : {1, 3, 17, 32, 45}) {
      const int64_t in = 64, ngroups = 3;
      SCOPED_TRACE("bits=" + std::to_string(bits) + " out=" + std::to_string(out));
      const std::vector<uint8_t> codes = random_values(rng, static_cast<size_t>(out * in), bits);
      const std::vector<int32_t> qw = gptq_pack_qweight(codes.data(), out, in, bits);
      ASSERT_EQ(static_cast<int64_t>(qw.size()), in * bits / 32 * out);  // [in / 32 * bits, out]
      // Column o of qweight is the stream of row o of codes.
      for (int64_t o = 0; o < out; ++o) {
        std::vector<uint8_t> row(codes.begin() + o * in, codes.begin() + (o + 1) * in);
        const std::vector<uint32_t> ref = reference_pack(row, bits);
        for (size_t k = 0; k < ref.size(); ++k) ASSERT_EQ(static_cast<uint32_t>(qw[k * out + o]), ref[k]);
      }
      EXPECT_EQ(gptq_unpack_qweight(qw.data(), out, in, bits), codes);

      const std::vector<uint8_t> zeros = random_values(rng, static_cast<size_t>(ngroups * out), bits);
      const std::vector<int32_t> qz = gptq_pack_qzeros(zeros.data(), ngroups, out, bits);
      const int64_t cols = gptq_packed_words(out, bits);
      ASSERT_EQ(static_cast<int64_t>(qz.size()), ngroups * cols);
      for (int64_t g = 0; g < ngroups; ++g) {
        std::vector<uint8_t> row(zeros.begin() + g * out, zeros.begin() + (g + 1) * out);
        const std::vector<uint32_t> ref = reference_pack(row, bits);
        for (int64_t k = 0; k < cols; ++k) ASSERT_EQ(static_cast<uint32_t>(qz[g * cols + k]), ref[k]);
      }
      EXPECT_EQ(gptq_unpack_qzeros(qz.data(), ngroups, out, bits), zeros);
    }
  }
}

TEST(GptqPack, RejectsValuesThatDoNotFit) {
  const std::vector<uint8_t> v{8};
  uint32_t w = 0;
  EXPECT_THROW(gptq_pack_stream(v.data(), 1, 1, 3, &w, 1), InternalError);
}

}  // namespace
}  // namespace streamq
