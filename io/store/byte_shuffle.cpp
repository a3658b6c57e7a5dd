// Byte-plane shuffle with straight loops for 2- and 4-byte elements that the
// compiler vectorizes; the generic loop covers any other size.
#include "io/store/byte_shuffle.h"

#include <bit>
#include <cstdint>
#include <cstring>

namespace streamq {

static_assert(std::endian::native == std::endian::little, "byte planes assume a little-endian host");

void byte_shuffle(const void* in, void* out, std::size_t n, std::size_t elem_size) {
  const auto* src = static_cast<const uint8_t*>(in);
  auto* dst = static_cast<uint8_t*>(out);
  if (elem_size == 2) {
    uint8_t* hi = dst;
    uint8_t* lo = dst + n;
    for (std::size_t i = 0; i < n; ++i) {
      hi[i] = src[2 * i + 1];
      lo[i] = src[2 * i];
    }
  } else if (elem_size == 4) {
    for (std::size_t i = 0; i < n; ++i) {
      uint32_t v;
      std::memcpy(&v, src + 4 * i, 4);
      dst[i] = static_cast<uint8_t>(v >> 24);
      dst[n + i] = static_cast<uint8_t>(v >> 16);
      dst[2 * n + i] = static_cast<uint8_t>(v >> 8);
      dst[3 * n + i] = static_cast<uint8_t>(v);
    }
  } else {
    for (std::size_t p = 0; p < elem_size; ++p)
      for (std::size_t i = 0; i < n; ++i) dst[p * n + i] = src[i * elem_size + (elem_size - 1 - p)];
  }
}

void byte_unshuffle(const void* in, void* out, std::size_t n, std::size_t elem_size) {
  const auto* src = static_cast<const uint8_t*>(in);
  auto* dst = static_cast<uint8_t*>(out);
  if (elem_size == 2) {
    const uint8_t* hi = src;
    const uint8_t* lo = src + n;
    for (std::size_t i = 0; i < n; ++i) {
      dst[2 * i] = lo[i];
      dst[2 * i + 1] = hi[i];
    }
  } else if (elem_size == 4) {
    for (std::size_t i = 0; i < n; ++i) {
      const uint32_t v = static_cast<uint32_t>(src[i]) << 24 | static_cast<uint32_t>(src[n + i]) << 16 |
                         static_cast<uint32_t>(src[2 * n + i]) << 8 | static_cast<uint32_t>(src[3 * n + i]);
      std::memcpy(dst + 4 * i, &v, 4);
    }
  } else {
    for (std::size_t p = 0; p < elem_size; ++p)
      for (std::size_t i = 0; i < n; ++i) dst[i * elem_size + (elem_size - 1 - p)] = src[p * n + i];
  }
}

}  // namespace streamq
