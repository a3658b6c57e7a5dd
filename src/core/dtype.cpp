// Element-type table and IEEE half / bfloat16 conversions.
#include "src/core/dtype.h"

#include <cstring>

#include "src/core/error.h"

namespace streamq {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
  }
  return "?";
}

bool dtype_from_name(const std::string& s, DType* out) {
  static const struct { const char* n; DType t; } table[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
      {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},     {"U8", DType::U8}};
  for (const auto& e : table) {
    if (s == e.n) { *out = e.t; return true; }
  }
  return false;
}

static uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return float_of(sign);
    // Subnormal half: value = mant * 2^-24, exact in float.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));
  return float_of(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: round abs * 2^24 to an integer, ties to even.
    const float v = float_of(abs) * 16777216.0f;  // exact scaling by a power of two
    const uint32_t r = static_cast<uint32_t>(__builtin_nearbyintf(v));
    return sign | static_cast<uint16_t>(r);
  }
  const uint32_t exp = ((abs >> 23) - 112) << 10;
  const uint32_t mant = abs & 0x7fffffu;
  uint32_t h = exp | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;  // may carry into exp: correct
  return sign | static_cast<uint16_t>(h);
}

float bf16_to_f32(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

void convert_to_f32(DType src, const void* in, float* out, std::size_t n) {
  switch (src) {
    case DType::F32: std::memcpy(out, in, n * 4); return;
    case DType::F16: {
      const auto* p = static_cast<const uint16_t*>(in);
      for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(p[i]);
      return;
    }
    case DType::BF16: {
      const auto* p = static_cast<const uint16_t*>(in);
      for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(p[i]);
      return;
    }
    case DType::F64: {
      const auto* p = static_cast<const double*>(in);
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      return;
    }
    default:
      throw InternalError(std::string("convert_to_f32: not a floating dtype: ") + dtype_name(src));
  }
}

void convert_from_f32(DType dst, const float* in, void* out, std::size_t n) {
  switch (dst) {
    case DType::F32: std::memcpy(out, in, n * 4); return;
    case DType::F16: {
      auto* p = static_cast<uint16_t*>(out);
      for (std::size_t i = 0; i < n; ++i) p[i] = f32_to_f16(in[i]);
      return;
    }
    case DType::BF16: {
      auto* p = static_cast<uint16_t*>(out);
      for (std::size_t i = 0; i < n; ++i) p[i] = f32_to_bf16(in[i]);
      return;
    }
    case DType::F64: {
      auto* p = static_cast<double*>(out);
      for (std::size_t i = 0; i < n; ++i) p[i] = in[i];
      return;
    }
    default:
      throw InternalError(std::string("convert_from_f32: not a floating dtype: ") + dtype_name(dst));
  }
}

}  // namespace streamq
