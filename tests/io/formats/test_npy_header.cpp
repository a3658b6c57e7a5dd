// .npy headers whose shape does not fit 64 bits: an InputError naming the
// file, not an escaped std::out_of_range (fuzz_npy found a 20-digit
// dimension) nor a wrapped element count that the size check would accept.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "io/formats/npy.h"
#include "src/core/error.h"
#include "tests/support/test_util.h"

namespace streamq {
namespace {

// A version-1 .npy with `dict` as its header (padded to 64 bytes) and `data`.
std::string npy_bytes(const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(h.size() & 0xff);
  out += static_cast<char>(h.size() >> 8);
  return out + h + data;
}

void expect_too_large(const std::string& shape) {
  test::ScratchDir dir("npy-header");
  const std::string path = dir.file("a.npy");
  test::write_all(path, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }",
                                  std::string(64, '\0')));
  try {
    read_npy(path);
    ADD_FAILURE() << "shape (" << shape << ") accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
}

TEST(NpyHeader, ShapesPast64BitsAreInputErrors) {
  expect_too_large("2, 28888888888888888888");         // one dimension past int64
  expect_too_large("4294967296, 4294967296");         // the product wraps to 0 elements
  expect_too_large("1152921504606846976, 8");         // 2^63 elements
  expect_too_large("2305843009213693952, 2");         // 2^62 elements: x 4 bytes wraps
}

TEST(NpyHeader, AnOrdinaryHeaderStillReads) {
  test::ScratchDir dir("npy-header-ok");
  const std::string path = dir.file("a.npy");
  float v[4] = {1, 2, 3, 4};
  test::write_all(path, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                                  std::string(reinterpret_cast<const char*>(v), sizeof v)));
  const NpyArray a = read_npy(path);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
  ASSERT_EQ(a.data.size(), sizeof v);
  EXPECT_EQ(std::memcmp(a.data.data(), v, sizeof v), 0);
}

// An empty float64 matrix (a 0 in the shape) reads as empty: no memcpy from
// or to a null pointer (fuzz_npy found it under UBSan, which CI runs).
TEST(NpyHeader, AnEmptyMatrixReadsAsEmpty) {
  test::ScratchDir dir("npy-header-empty");
  const std::string path = dir.file("e.npy");
  test::write_all(path, npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (0, 3), }", ""));
  std::vector<int64_t> shape;
  const std::vector<double> m = read_matrix_f64(path, &shape);
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(shape, (std::vector<int64_t>{0, 3}));
}

}  // namespace
}  // namespace streamq
