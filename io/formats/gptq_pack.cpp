// GPTQ bit streams: a 64-bit accumulator carries the bits of a value that
// straddles two words (3-bit), so every width is the same loop.
#include "io/formats/gptq_pack.h"

#include <tbb/parallel_for.h>

#include <string>

#include "src/core/error.h"

namespace streamq {
namespace {

void check_bits(int bits) {
  if (bits < 1 || bits > 8) throw InternalError("gptq pack: " + std::to_string(bits) + " bits (1..8 expected)");
}

}  // namespace

int64_t gptq_packed_words(int64_t n, int bits) { return (n * bits + 31) / 32; }

void gptq_pack_stream(const uint8_t* values, int64_t value_stride, int64_t n, int bits, uint32_t* words,
                      int64_t word_stride) {
  check_bits(bits);
  const uint32_t limit = 1u << bits;
  uint64_t acc = 0;  // pending bits, lowest first
  int pending = 0;
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = values[i * value_stride];
    if (v >= limit)
      throw InternalError("gptq pack: value " + std::to_string(v) + " at " + std::to_string(i) + " does not fit " +
                          std::to_string(bits) + " bits");
    acc |= static_cast<uint64_t>(v) << pending;
    pending += bits;
    if (pending >= 32) {
      words[k++ * word_stride] = static_cast<uint32_t>(acc);
      acc >>= 32;
      pending -= 32;
    }
  }
  if (pending > 0) words[k * word_stride] = static_cast<uint32_t>(acc);
}

void gptq_unpack_stream(const uint32_t* words, int64_t word_stride, int64_t n, int bits, uint8_t* values,
                        int64_t value_stride) {
  check_bits(bits);
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  uint64_t acc = 0;  // unread bits, lowest first
  int avail = 0;
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (avail < bits) {
      acc |= static_cast<uint64_t>(words[k++ * word_stride]) << avail;
      avail += 32;
    }
    values[i * value_stride] = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    avail -= bits;
  }
}

std::vector<int32_t> gptq_pack_qweight(const uint8_t* codes, int64_t out, int64_t in, int bits) {
  const int64_t rows = gptq_packed_words(in, bits);
  std::vector<int32_t> q(static_cast<size_t>(rows * out), 0);
  auto* words = reinterpret_cast<uint32_t*>(q.data());
  tbb::parallel_for(int64_t{0}, out, [&](int64_t o) { gptq_pack_stream(codes + o * in, 1, in, bits, words + o, out); });
  return q;
}

std::vector<uint8_t> gptq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in, int bits) {
  std::vector<uint8_t> codes(static_cast<size_t>(out * in));
  const auto* words = reinterpret_cast<const uint32_t*>(qweight);
  tbb::parallel_for(int64_t{0}, out,
                    [&](int64_t o) { gptq_unpack_stream(words + o, out, in, bits, codes.data() + o * in, 1); });
  return codes;
}

std::vector<int32_t> gptq_pack_qzeros(const uint8_t* zeros, int64_t ngroups, int64_t out, int bits) {
  const int64_t cols = gptq_packed_words(out, bits);
  std::vector<int32_t> q(static_cast<size_t>(ngroups * cols), 0);
  auto* words = reinterpret_cast<uint32_t*>(q.data());
  for (int64_t g = 0; g < ngroups; ++g) gptq_pack_stream(zeros + g * out, 1, out, bits, words + g * cols, 1);
  return q;
}

std::vector<uint8_t> gptq_unpack_qzeros(const int32_t* qzeros, int64_t ngroups, int64_t out, int bits) {
  const int64_t cols = gptq_packed_words(out, bits);
  std::vector<uint8_t> z(static_cast<size_t>(ngroups * out));
  const auto* words = reinterpret_cast<const uint32_t*>(qzeros);
  for (int64_t g = 0; g < ngroups; ++g) gptq_unpack_stream(words + g * cols, 1, out, bits, z.data() + g * out, 1);
  return z;
}

}  // namespace streamq
