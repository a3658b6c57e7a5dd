// The in-memory ActivationStore: round trip, drop, and a clear error naming
// block, flow and chunk for what is not there (the compressed store has its
// own tests: tests/io/store/test_compressed_store.cpp).
#include <gtest/gtest.h>

#include "src/core/error.h"
#include "io/store/activation_store.h"

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

}  // namespace
}  // namespace streamq
