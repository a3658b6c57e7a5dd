// Typed reads of GGUF metadata values: the numeric bytes stay in the mapped
// file and are converted on access, with the key named when a type does not fit.
#include <cstring>
#include <limits>

#include "src/core/error.h"
#include "io/formats/gguf.h"

namespace streamq {

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: return "uint8";
    case GgufValueType::I8: return "int8";
    case GgufValueType::U16: return "uint16";
    case GgufValueType::I16: return "int16";
    case GgufValueType::U32: return "uint32";
    case GgufValueType::I32: return "int32";
    case GgufValueType::F32: return "float32";
    case GgufValueType::Bool: return "bool";
    case GgufValueType::String: return "string";
    case GgufValueType::Array: return "array";
    case GgufValueType::U64: return "uint64";
    case GgufValueType::I64: return "int64";
    case GgufValueType::F64: return "float64";
  }
  return "unknown";
}

namespace {

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

bool is_integer(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::U16: case GgufValueType::I16:
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::U64: case GgufValueType::I64:
      return true;
    default:
      return false;
  }
}

// One integer element at `p`; false when a uint64 does not fit in int64.
bool load_int(GgufValueType t, const unsigned char* p, int64_t* out) {
  switch (t) {
    case GgufValueType::U8: *out = load<uint8_t>(p); return true;
    case GgufValueType::I8: *out = load<int8_t>(p); return true;
    case GgufValueType::U16: *out = load<uint16_t>(p); return true;
    case GgufValueType::I16: *out = load<int16_t>(p); return true;
    case GgufValueType::U32: *out = load<uint32_t>(p); return true;
    case GgufValueType::I32: *out = load<int32_t>(p); return true;
    case GgufValueType::I64: *out = load<int64_t>(p); return true;
    case GgufValueType::U64: {
      const uint64_t u = load<uint64_t>(p);
      *out = static_cast<int64_t>(u);
      return u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    }
    default: return false;
  }
}

double load_number(GgufValueType t, const unsigned char* p) {
  if (t == GgufValueType::F32) return load<float>(p);
  if (t == GgufValueType::F64) return load<double>(p);
  if (t == GgufValueType::U64) return static_cast<double>(load<uint64_t>(p));
  int64_t i = 0;
  load_int(t, p, &i);
  return static_cast<double>(i);
}

std::size_t elem_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    default: return 8;
  }
}

[[noreturn]] void wrong_type(const std::string& where, const GgufValue& v, const char* expected) {
  std::string got = gguf_value_type_name(v.type);
  if (v.type == GgufValueType::Array) got += " of " + std::string(gguf_value_type_name(v.elem_type));
  throw InputError(where + " is " + got + ", expected " + expected);
}

}  // namespace

int64_t GgufValue::as_int(const std::string& where) const {
  if (!is_integer(type)) wrong_type(where, *this, "an integer");
  int64_t v = 0;
  if (!load_int(type, raw, &v))
    throw InputError(where + " is " + std::to_string(load<uint64_t>(raw)) + ", out of range");
  return v;
}

double GgufValue::as_double(const std::string& where) const {
  if (!is_integer(type) && type != GgufValueType::F32 && type != GgufValueType::F64)
    wrong_type(where, *this, "a number");
  return load_number(type, raw);
}

bool GgufValue::as_bool(const std::string& where) const {
  if (type != GgufValueType::Bool) wrong_type(where, *this, "a bool");
  return raw[0] != 0;  // llama.cpp writes 0/1 and reads any non-zero byte as true
}

const std::string& GgufValue::as_string(const std::string& where) const {
  if (type != GgufValueType::String) wrong_type(where, *this, "a string");
  return str;
}

std::vector<int64_t> GgufValue::as_int_array(const std::string& where) const {
  if (type != GgufValueType::Array || !is_integer(elem_type)) wrong_type(where, *this, "an array of integers");
  std::vector<int64_t> out(count);
  const std::size_t sz = elem_size(elem_type);
  for (uint64_t i = 0; i < count; ++i)
    if (!load_int(elem_type, raw + i * sz, &out[i]))
      throw InputError(where + "[" + std::to_string(i) + "] is out of the int64 range");
  return out;
}

std::vector<float> GgufValue::as_float_array(const std::string& where) const {
  const bool numeric = type == GgufValueType::Array &&
                       (is_integer(elem_type) || elem_type == GgufValueType::F32 || elem_type == GgufValueType::F64);
  if (!numeric) wrong_type(where, *this, "an array of numbers");
  std::vector<float> out(count);
  const std::size_t sz = elem_size(elem_type);
  for (uint64_t i = 0; i < count; ++i) out[i] = static_cast<float>(load_number(elem_type, raw + i * sz));
  return out;
}

const std::vector<std::string>& GgufValue::as_string_array(const std::string& where) const {
  if (type != GgufValueType::Array || elem_type != GgufValueType::String)
    wrong_type(where, *this, "an array of strings");
  return strings;
}

}  // namespace streamq
