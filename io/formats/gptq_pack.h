// Bit packing of GPTQ checkpoints (docs/gptq-format.md): b-bit values in
// int32 words as one little-endian bit stream, value j at stream bits
// [j b, (j + 1) b), word k holding stream bits [32 k, 32 k + 32). For b = 2,
// 4, 8 that is 32 / b whole values per word; for b = 3 it is AutoGPTQ's
// layout where 32 values fill 3 words and values 10 and 21 straddle a word
// boundary. qweight streams run down the input dimension (one stream per
// output column), qzeros streams along the output dimension (one per group).
#pragma once

#include <cstdint>
#include <vector>

namespace streamq {

// Words that hold n b-bit values: ceil(n b / 32).
int64_t gptq_packed_words(int64_t n, int bits);

// One stream: values[i * value_stride] for i < n (each < 2^bits) into
// words[k * word_stride] for k < gptq_packed_words(n, bits). Unused high bits
// of the last word are zero. Throws InternalError for a value out of range.
void gptq_pack_stream(const uint8_t* values, int64_t value_stride, int64_t n, int bits, uint32_t* words,
                      int64_t word_stride);
void gptq_unpack_stream(const uint32_t* words, int64_t word_stride, int64_t n, int bits, uint8_t* values,
                        int64_t value_stride);

// codes [out, in] (streamq's row-major weight layout) -> qweight
// [gptq_packed_words(in, bits), out], and back.
std::vector<int32_t> gptq_pack_qweight(const uint8_t* codes, int64_t out, int64_t in, int bits);
std::vector<uint8_t> gptq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in, int bits);

// Stored zero points [ngroups, out] (already in the checkpoint's convention)
// -> qzeros [ngroups, gptq_packed_words(out, bits)], and back.
std::vector<int32_t> gptq_pack_qzeros(const uint8_t* zeros, int64_t ngroups, int64_t out, int bits);
std::vector<uint8_t> gptq_unpack_qzeros(const int32_t* qzeros, int64_t ngroups, int64_t out, int bits);

}  // namespace streamq
