// Bit packing of compressed-tensors "pack-quantized" checkpoints
// (docs/compressed-tensors-format.md; compressed_tensors
// compressors/quantized_compressors/pack_quantized.py pack_to_int32): b-bit
// values offset to unsigned (signed q + 2^(b-1), which is exactly streamq's
// code in [0, 2^b - 1]) packed 32 / b whole values per int32 word, value j
// of a word at bits [j b, (j + 1) b), lowest bits first; a row shorter than
// a multiple of 32 / b is padded with zero values. Only widths that divide 32
// (1, 2, 4, 8) are packed: for them compressed-tensors' two packings agree
// (whole values per word up to late 2025; a dense bit stream with values
// straddling words in current releases, helpers.py), for 3, 5, 6, 7 bits
// they differ and a checkpoint would be read differently by each.
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

// Values per int32 word: 32 / bits (bits 1..8).
int ct_pack_factor(int bits);
// Words that hold n values: ceil(n / ct_pack_factor(bits)).
int64_t ct_packed_words(int64_t n, int bits);

// packed_dim 1 (weight_packed): values [rows, cols] -> int32 [rows, ct_packed_words(cols)].
// Throws InternalError for a value >= 2^bits.
std::vector<int32_t> ct_pack_rows(const uint8_t* values, int64_t rows, int64_t cols, int bits);
std::vector<uint8_t> ct_unpack_rows(const int32_t* packed, int64_t rows, int64_t cols, int bits);

// packed_dim 0 (weight_zero_point): values [rows, cols] -> int32
// [ct_packed_words(rows), cols], word [k, c] holding rows k * f .. k * f + f - 1
// of column c.
std::vector<int32_t> ct_pack_cols(const uint8_t* values, int64_t rows, int64_t cols, int bits);
std::vector<uint8_t> ct_unpack_cols(const int32_t* packed, int64_t rows, int64_t cols, int bits);

}  // namespace streamq
