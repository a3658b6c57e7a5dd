// Element types of stored tensors and conversions between them and float.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace streamq {

enum class DType { F32, F16, BF16, F64, I32, I16, I8, U8 };

// Bytes per element.
std::size_t dtype_size(DType t);
// The safetensors spelling ("F32", "BF16", ...).
const char* dtype_name(DType t);
// Parses a safetensors dtype string; returns false when unknown.
bool dtype_from_name(const std::string& s, DType* out);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to inf
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even, NaN stays NaN

// Converts n elements of a floating dtype (F32/F16/BF16/F64) to float.
void convert_to_f32(DType src, const void* in, float* out, std::size_t n);
// Converts n floats to a floating dtype (F32/F16/BF16/F64).
void convert_from_f32(DType dst, const float* in, void* out, std::size_t n);

}  // namespace streamq
