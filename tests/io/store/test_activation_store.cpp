// Both ActivationStore implementations: round trip, overwrite, drop, and a
// clear error naming block, flow and chunk for what is not there.
#include <gtest/gtest.h>

#include <filesystem>

#include "src/core/error.h"
#include "io/store/activation_store.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

void exercise(ActivationStore& s) {
  std::vector<float> a(1000), b(37), out;
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<float>(i);
  s.put(0, Flow::Fp, 0, a.data(), 1000);
  s.put(0, Flow::Quant, 0, b.data(), 37);
  s.put(1, Flow::Fp, 3, b.data(), 37);
  s.get(0, Flow::Fp, 0, &out);
  EXPECT_EQ(out, a);
  s.get(0, Flow::Quant, 0, &out);
  EXPECT_EQ(out, b);
  s.get(1, Flow::Fp, 3, &out);
  EXPECT_EQ(out, b);
  EXPECT_EQ(s.bytes_held(), (1000 + 37 + 37) * 4u);
  s.drop(0);
  EXPECT_EQ(s.bytes_held(), 37 * 4u);
  try {
    s.get(0, Flow::Fp, 0, &out);
    FAIL() << "dropped chunk still readable";
  } catch (const InternalError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("block 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("flow fp"), std::string::npos) << msg;
    EXPECT_NE(msg.find("chunk 0"), std::string::npos) << msg;
  }
  EXPECT_THROW(s.get(1, Flow::Quant, 3, &out), InternalError);
}

TEST(ActivationStore, MemoryRoundTrip) {
  auto s = make_memory_store();
  exercise(*s);
}

TEST(ActivationStore, DiskRoundTripAndCleanup) {
  test::ScratchDir dir("store");
  {
    auto s = make_disk_store(dir.file("acts"));
    exercise(*s);
    EXPECT_FALSE(std::filesystem::exists(dir.file("acts/block0.fp.f32")));  // dropped
    EXPECT_TRUE(std::filesystem::exists(dir.file("acts/block1.fp.f32")));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("acts")));  // destructor removes its files
}

}  // namespace
}  // namespace streamq
