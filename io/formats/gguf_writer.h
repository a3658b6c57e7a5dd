// GGUF v3 writer (llama.cpp's container, gguf.h / gguf-py's GGUFWriter): a
// header, metadata key-values, tensor infos, then each tensor's bytes at an
// offset aligned to general.alignment (32). Tensors are planned up front and
// their bytes streamed in plan order, so the model never sits in memory. The
// file is written under a temporary name and renamed into place, fsynced,
// only by finish(). Also the block encoders of the legacy quantized types
// (Q4_0, Q4_1, Q8_0: 32-wide blocks with fp16 d, and m for Q4_1), from codes
// a quantizer already chose.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace streamq {

class GgufWriter {
 public:
  // `path`: the final file; nothing appears there before finish().
  explicit GgufWriter(std::string path);
  ~GgufWriter();  // removes the temporary file when finish() was not reached
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, written in call order (before the first write_tensor).
  void kv_u32(const std::string& key, uint32_t v);
  void kv_i32(const std::string& key, int32_t v);
  void kv_u64(const std::string& key, uint64_t v);
  void kv_f32(const std::string& key, float v);
  void kv_bool(const std::string& key, bool v);
  void kv_str(const std::string& key, const std::string& v);
  void kv_str_array(const std::string& key, const std::vector<std::string>& v);
  void kv_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void kv_f32_array(const std::string& key, const std::vector<float>& v);

  // Plans a tensor: ne in ggml order (ne[0] fastest, i.e. HF shape reversed)
  // of ggml type `type` (ggml_type::* in gguf.h; ne[0] a multiple of its block).
  void add_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t type);
  // Bytes of the next planned tensor, in plan order, possibly in several
  // pieces; a tensor is complete when its planned size has been written.
  void write_tensor_data(const std::string& name, const void* bytes, uint64_t nbytes);
  // Checks every tensor was written, fsyncs, renames, fsyncs the directory.
  void finish();

  // Bytes of a planned tensor of this type and shape.
  static uint64_t tensor_bytes(const std::vector<int64_t>& ne, uint32_t type);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One 32-wide block from codes in [0, 15] (Q4_0, Q4_1) or [0, 255] (Q8_0,
// stored as int8 code - 128) and the block's fp16 d (and m) bits. Q4_0: x =
// d * (code - 8); Q4_1: x = d * code + m; Q8_0: x = d * (code - 128). Nibbles
// as ggml packs them: byte j holds element j (low) and j + 16 (high).
constexpr int kGgmlBlock = 32;
void ggml_encode_q4_0(const uint8_t* codes, uint16_t d, uint8_t* out18);
void ggml_encode_q4_1(const uint8_t* codes, uint16_t d, uint16_t m, uint8_t* out20);
void ggml_encode_q8_0(const uint8_t* codes, uint16_t d, uint8_t* out34);

}  // namespace streamq
