// ggml tensor types: the block table of every type ggml defines (so the
// container can validate sizes of any file) and dequantization to float of
// the types streamq reads. Block layouts follow ggml-common.h; each value is
// one float product (plus one add for Q4_1) of a small integer and an fp16
// scale, so the results are exact and match ggml's and gguf-py's bit for bit.
#include <cstring>

#include "src/core/error.h"
#include "io/formats/gguf.h"

namespace streamq {

namespace {

struct TypeEntry {
  uint32_t id;
  GgmlTypeTraits traits;
};

// ggml.h `enum ggml_type` with blck_size and type_size from ggml.c's
// type_traits; ids 4, 5 and 31-33, 36-38 were removed from ggml and are
// rejected as unknown.
constexpr TypeEntry kTypes[] = {
    {0, {"F32", 1, 4}},        {1, {"F16", 1, 2}},        {2, {"Q4_0", 32, 18}},    {3, {"Q4_1", 32, 20}},
    {6, {"Q5_0", 32, 22}},     {7, {"Q5_1", 32, 24}},     {8, {"Q8_0", 32, 34}},    {9, {"Q8_1", 32, 36}},
    {10, {"Q2_K", 256, 84}},   {11, {"Q3_K", 256, 110}},  {12, {"Q4_K", 256, 144}}, {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},  {15, {"Q8_K", 256, 292}},  {16, {"IQ2_XXS", 256, 66}}, {17, {"IQ2_XS", 256, 74}},
    {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}}, {20, {"IQ4_NL", 32, 18}}, {21, {"IQ3_S", 256, 110}},
    {22, {"IQ2_S", 256, 82}},  {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},      {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},       {27, {"I64", 1, 8}},       {28, {"F64", 1, 8}},      {29, {"IQ1_M", 256, 56}},
    {30, {"BF16", 1, 2}},      {34, {"TQ1_0", 256, 54}},  {35, {"TQ2_0", 256, 66}}, {39, {"MXFP4", 32, 17}},
};

uint16_t load_u16(const unsigned char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Q8_0: fp16 d, 32 x int8; x = q * d.
void dequant_q8_0(const unsigned char* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 34, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const auto* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(q[j]) * d;
  }
}

// Q4_0: fp16 d, 16 bytes; byte j holds element j (low nibble) and j + 16
// (high nibble); x = (nibble - 8) * d.
void dequant_q4_0(const unsigned char* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 18, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const unsigned char* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      dst[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

// Q4_1: fp16 d, fp16 m, 16 bytes of nibbles as Q4_0; x = nibble * d + m.
// nibble * d is exact in float, so the one rounding is the add's, with or
// without FMA contraction.
void dequant_q4_1(const unsigned char* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 20, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const float m = f16_to_f32(load_u16(src + 2));
    const unsigned char* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
      dst[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t type) {
  for (const TypeEntry& e : kTypes)
    if (e.id == type) return &e.traits;
  return nullptr;
}

std::string ggml_type_label(uint32_t type) {
  const GgmlTypeTraits* t = ggml_type_traits(type);
  return t ? std::string(t->name) : "type " + std::to_string(type);
}

bool gguf_can_dequantize(uint32_t type) {
  using namespace ggml_type;
  return type == F32 || type == F16 || type == BF16 || type == Q8_0 || type == Q4_0 || type == Q4_1;
}

void gguf_dequantize(uint32_t type, const void* src, float* dst, int64_t n, const std::string& where) {
  const GgmlTypeTraits* t = ggml_type_traits(type);
  if (!t || !gguf_can_dequantize(type))
    throw InputError(where + ": tensor type " + ggml_type_label(type) +
                     " is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  if (n < 0 || n % t->block != 0)
    throw InternalError(where + ": dequantizing " + std::to_string(n) + " elements of " + t->name +
                        ", not a whole number of blocks");
  if (n == 0) return;  // an empty tensor (a 0 in ne): dst may be null, and memcpy must not see it
  const auto* s = static_cast<const unsigned char*>(src);
  const int64_t blocks = n / t->block;
  switch (type) {
    case ggml_type::F32: std::memcpy(dst, s, static_cast<std::size_t>(n) * 4); break;
    // Element by element through memcpy: general.alignment may be 1, so the
    // data need not be 2-byte aligned.
    case ggml_type::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(s + 2 * i));
      break;
    case ggml_type::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(s + 2 * i));
      break;
    case ggml_type::Q8_0: dequant_q8_0(s, dst, blocks); break;
    case ggml_type::Q4_0: dequant_q4_0(s, dst, blocks); break;
    case ggml_type::Q4_1: dequant_q4_1(s, dst, blocks); break;
  }
}

}  // namespace streamq
