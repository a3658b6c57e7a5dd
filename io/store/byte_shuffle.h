// Byte planes for compressing floating-point data: the most significant byte
// of every element, then the next, down to the least significant. Sign and
// exponent bytes of activations repeat a lot; mantissa bytes are near noise;
// separated, zstd finds the repeats.
#pragma once

#include <cstddef>

namespace streamq {

// out[p * n + i] = byte (elem_size - 1 - p) of element i (little-endian host).
void byte_shuffle(const void* in, void* out, std::size_t n, std::size_t elem_size);
// The inverse.
void byte_unshuffle(const void* in, void* out, std::size_t n, std::size_t elem_size);

}  // namespace streamq
