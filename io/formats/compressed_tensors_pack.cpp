// compressed-tensors pack-quantized bit packing: whole values per word, lowest first.
#include "io/formats/compressed_tensors_pack.h"

#include <string>

#include "src/core/error.h"

namespace streamq {

int ct_pack_factor(int bits) {
  if (bits != 1 && bits != 2 && bits != 4 && bits != 8)
    throw InternalError("compressed-tensors packing: bits " + std::to_string(bits) + " (1, 2, 4 or 8)");
  return 32 / bits;
}

int64_t ct_packed_words(int64_t n, int bits) {
  const int f = ct_pack_factor(bits);
  return (n + f - 1) / f;
}

namespace {

// One stream of n values at values[i * vstride] into words[k * wstride].
void pack_stream(const uint8_t* values, int64_t vstride, int64_t n, int bits, int32_t* words, int64_t wstride) {
  const int f = ct_pack_factor(bits);
  const uint32_t limit = 1u << bits;
  for (int64_t k = 0; k * f < n; ++k) {
    uint32_t w = 0;
    for (int j = 0; j < f && k * f + j < n; ++j) {
      const uint32_t v = values[(k * f + j) * vstride];
      if (v >= limit)
        throw InternalError("compressed-tensors packing: value " + std::to_string(v) + " needs more than " +
                            std::to_string(bits) + " bits");
      w |= v << (j * bits);
    }
    words[k * wstride] = static_cast<int32_t>(w);
  }
}

void unpack_stream(const int32_t* words, int64_t wstride, int64_t n, int bits, uint8_t* values, int64_t vstride) {
  const int f = ct_pack_factor(bits);
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t w = static_cast<uint32_t>(words[(i / f) * wstride]);
    values[i * vstride] = static_cast<uint8_t>((w >> ((i % f) * bits)) & mask);
  }
}

}  // namespace

std::vector<int32_t> ct_pack_rows(const uint8_t* values, int64_t rows, int64_t cols, int bits) {
  const int64_t words = ct_packed_words(cols, bits);
  std::vector<int32_t> out(static_cast<size_t>(rows * words), 0);
  for (int64_t r = 0; r < rows; ++r) pack_stream(values + r * cols, 1, cols, bits, out.data() + r * words, 1);
  return out;
}

std::vector<uint8_t> ct_unpack_rows(const int32_t* packed, int64_t rows, int64_t cols, int bits) {
  const int64_t words = ct_packed_words(cols, bits);
  std::vector<uint8_t> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) unpack_stream(packed + r * words, 1, cols, bits, out.data() + r * cols, 1);
  return out;
}

std::vector<int32_t> ct_pack_cols(const uint8_t* values, int64_t rows, int64_t cols, int bits) {
  std::vector<int32_t> out(static_cast<size_t>(ct_packed_words(rows, bits) * cols), 0);
  for (int64_t c = 0; c < cols; ++c) pack_stream(values + c, cols, rows, bits, out.data() + c, cols);
  return out;
}

std::vector<uint8_t> ct_unpack_cols(const int32_t* packed, int64_t rows, int64_t cols, int bits) {
  std::vector<uint8_t> out(static_cast<size_t>(rows * cols));
  for (int64_t c = 0; c < cols; ++c) unpack_stream(packed + c, cols, rows, bits, out.data() + c, cols);
  return out;
}

}  // namespace streamq
