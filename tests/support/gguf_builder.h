// Builds GGUF files byte by byte for the GGUF reader's tests: well-formed
// ones from metadata and tensors, and malformed ones through raw overrides
// (any n_dims, type id, offset, or hand-written value bytes).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "src/core/dtype.h"
#include "io/formats/gguf.h"

namespace streamq::test {

class GgufBuilder {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // used for layout; set general.alignment yourself to change the file's

  // Little-endian encoders, public so tests can hand-write values.
  template <class T>
  static void put(std::string* s, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s->append(b, sizeof(T));
  }
  static void put_str(std::string* s, const std::string& v) {
    put<uint64_t>(s, v.size());
    s->append(v);
  }

  // A key with a raw value: `type` then `value_bytes` exactly as given.
  GgufBuilder& kv_raw(const std::string& key, uint32_t type, const std::string& value_bytes) {
    put_str(&kv_, key);
    put<uint32_t>(&kv_, type);
    kv_ += value_bytes;
    ++n_kv_;
    return *this;
  }
  GgufBuilder& kv_u32(const std::string& key, uint32_t v) { return kv_raw(key, 4, enc(v)); }
  GgufBuilder& kv_i32(const std::string& key, int32_t v) { return kv_raw(key, 5, enc(v)); }
  GgufBuilder& kv_u64(const std::string& key, uint64_t v) { return kv_raw(key, 10, enc(v)); }
  GgufBuilder& kv_f32(const std::string& key, float v) { return kv_raw(key, 6, enc(v)); }
  GgufBuilder& kv_bool(const std::string& key, bool v) { return kv_raw(key, 7, std::string(1, v ? 1 : 0)); }
  GgufBuilder& kv_str(const std::string& key, const std::string& v) {
    std::string b;
    put_str(&b, v);
    return kv_raw(key, 8, b);
  }
  GgufBuilder& kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    std::string b;
    put<uint32_t>(&b, 8);
    put<uint64_t>(&b, v.size());
    for (const auto& s : v) put_str(&b, s);
    return kv_raw(key, 9, b);
  }
  GgufBuilder& kv_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    std::string b;
    put<uint32_t>(&b, 5);
    put<uint64_t>(&b, v.size());
    for (int32_t x : v) put(&b, x);
    return kv_raw(key, 9, b);
  }

  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type = 0;
    std::string data;                // bytes placed in the data section
    std::optional<uint64_t> offset;  // override of the computed (aligned, packed) offset
  };
  GgufBuilder& tensor(Tensor t) {
    tensors_.push_back(std::move(t));
    return *this;
  }
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::string data) {
    return tensor(Tensor{name, std::move(ne), type, std::move(data), std::nullopt});
  }

  std::string bytes() const {
    std::string s = "GGUF";
    put<uint32_t>(&s, version);
    put<uint64_t>(&s, tensors_.size());
    put<uint64_t>(&s, n_kv_);
    s += kv_;
    std::string data;
    for (const Tensor& t : tensors_) {
      data.append((alignment - data.size() % alignment) % alignment, '\0');
      put_str(&s, t.name);
      put<uint32_t>(&s, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) put<uint64_t>(&s, d);
      put<uint32_t>(&s, t.type);
      put<uint64_t>(&s, t.offset ? *t.offset : data.size());
      data += t.data;
    }
    s.append((alignment - s.size() % alignment) % alignment, '\0');
    return s + data;
  }

 private:
  template <class T>
  static std::string enc(T v) {
    std::string b;
    put(&b, v);
    return b;
  }
  std::string kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// F32 values as tensor bytes.
inline std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// A random tensor of `n` elements of a ggml type (F32, F16, BF16, Q4_0, Q4_1,
// Q8_0) as file bytes, and its values in GGUF order from a float64 reference
// of ggml's formulas. Scales are fp16 values in +-[2^-10, 2^4], where the
// reference's float64 arithmetic is exact, so it rounds once, like ggml.
struct RandomTensor {
  std::string bytes;
  std::vector<float> values;
};
inline RandomTensor random_gguf_tensor(uint32_t type, int64_t n, std::mt19937_64& rng) {
  const auto scale = [&] {
    const float mag = std::ldexp(1.0f + static_cast<float>(rng() % 1024) / 1024, static_cast<int>(rng() % 15) - 10);
    return f16_to_f32(f32_to_f16(rng() % 2 ? mag : -mag));
  };
  const auto put_f16 = [](std::string* s, float v) { GgufBuilder::put<uint16_t>(s, f32_to_f16(v)); };
  RandomTensor t;
  if (type == ggml_type::F32 || type == ggml_type::F16 || type == ggml_type::BF16) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = scale();
      if (type == ggml_type::F32) GgufBuilder::put<float>(&t.bytes, v * 1.001f);
      if (type == ggml_type::F16) GgufBuilder::put<uint16_t>(&t.bytes, f32_to_f16(v));
      if (type == ggml_type::BF16) GgufBuilder::put<uint16_t>(&t.bytes, f32_to_bf16(v));
      t.values.push_back(type == ggml_type::F32   ? v * 1.001f
                         : type == ggml_type::F16 ? v
                                                  : bf16_to_f32(f32_to_bf16(v)));
    }
    return t;
  }
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = scale(), m = scale();
    put_f16(&t.bytes, d);
    if (type == ggml_type::Q4_1) put_f16(&t.bytes, m);
    uint8_t q[32];
    for (auto& x : q) x = static_cast<uint8_t>(rng());
    if (type == ggml_type::Q8_0) {
      t.bytes.append(reinterpret_cast<const char*>(q), 32);
      for (int j = 0; j < 32; ++j) t.values.push_back(static_cast<float>(static_cast<int8_t>(q[j]) * double{d}));
      continue;
    }
    for (auto& x : q) x &= 15;
    for (int j = 0; j < 16; ++j) t.bytes += static_cast<char>(q[j] | (q[j + 16] << 4));
    for (int j = 0; j < 32; ++j)
      t.values.push_back(static_cast<float>(type == ggml_type::Q4_0 ? (q[j] - 8.0) * d : q[j] * double{d} + m));
  }
  return t;
}

// numpy's x.reshape(a, b, c, d).swapaxes(1, 2) for a row-major x: the
// independent twin of llama.cpp's q/k permutation (and of its inverse).
inline std::vector<float> swap_axes_12(const std::vector<float>& x, int64_t a, int64_t b, int64_t c, int64_t d) {
  std::vector<float> out(x.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c; ++k)
        for (int64_t l = 0; l < d; ++l) out[((i * c + k) * b + j) * d + l] = x[((i * b + j) * c + k) * d + l];
  return out;
}

}  // namespace streamq::test
