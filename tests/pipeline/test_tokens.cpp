// Token files and calibration/evaluation windows.
#include <gtest/gtest.h>

#include <set>

#include "src/core/error.h"
#include "src/pipeline/tokens.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

TEST(Tokens, ReadsBothWidthsAndRejectsBadFiles) {
  test::ScratchDir dir("tokens");
  test::write_all(dir.file("u16"), std::string("\x01\x00\x05\x01", 4));
  EXPECT_EQ(read_token_file(dir.file("u16"), TokensDType::U16, 512), (std::vector<int32_t>{1, 261}));
  test::write_all(dir.file("i32"), std::string("\x07\x00\x00\x00", 4));
  EXPECT_EQ(read_token_file(dir.file("i32"), TokensDType::I32, 512), (std::vector<int32_t>{7}));

  test::write_all(dir.file("odd"), std::string("\x01\x00\x05", 3));
  EXPECT_THROW(read_token_file(dir.file("odd"), TokensDType::U16, 512), InputError);
  test::write_all(dir.file("big"), std::string("\x00\x02", 2));  // id 512 with vocab 512
  try {
    read_token_file(dir.file("big"), TokensDType::U16, 512);
    FAIL() << "id outside the vocabulary accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("big")), std::string::npos) << e.what();
  }
  test::write_all(dir.file("text.txt"), "Once upon a time there was a little girl named Lily.\n");
  try {
    read_token_file(dir.file("text.txt"), TokensDType::U16, 50000);
    FAIL() << "text accepted as token ids";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("token ids"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_token_file(dir.file("missing"), TokensDType::U16, 512), InputError);
  EXPECT_THROW(parse_tokens_dtype("uint8"), InputError);
}

TEST(Tokens, SampledWindowsAreDeterministicContiguousAndSeedDependent) {
  std::vector<int32_t> stream(5000);
  for (size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<int32_t>(i);
  const auto a = sample_windows(stream, 40, 64, 7, "s");
  EXPECT_EQ(a, sample_windows(stream, 40, 64, 7, "s"));
  EXPECT_NE(a, sample_windows(stream, 40, 64, 8, "s"));
  ASSERT_EQ(a.size(), 40u * 64u);
  std::set<int32_t> starts;
  for (int s = 0; s < 40; ++s) {
    const int32_t start = a[s * 64];
    starts.insert(start);
    EXPECT_LE(start + 63, 4999);
    for (int t = 1; t < 64; ++t) ASSERT_EQ(a[s * 64 + t], start + t);  // windows are contiguous slices
  }
  EXPECT_GT(starts.size(), 30u);
  EXPECT_THROW(sample_windows(stream, 1, 6000, 0, "s"), InputError);
}

TEST(Tokens, EvalWindowsAreTheLeadingNonOverlappingOnes) {
  std::vector<int32_t> stream(1000);
  for (size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<int32_t>(i);
  int64_t n = 0;
  const auto w = eval_windows(stream, 256, 0, "s", &n);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(w, std::vector<int32_t>(stream.begin(), stream.begin() + 768));
  EXPECT_THROW(eval_windows(stream, 256, 4, "s", &n), InputError);
}

}  // namespace
}  // namespace streamq
