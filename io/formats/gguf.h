// GGUF input (llama.cpp's model container, versions 2 and 3): the validated,
// mmapped container, dequantization of its tensor types to float, and a
// llama-architecture view in HF names, layout, config.json and tokenizer.json,
// so a user with only a GGUF can quantize it with streamq's methods.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/file/mapped_file.h"
#include "src/core/dtype.h"

namespace streamq {

// ---- metadata -------------------------------------------------------------

// Value type ids as stored in the file (gguf.h `enum gguf_type`).
enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Numbers and bools are not copied: `raw` points at their
// little-endian bytes inside the mapped file, so a value lives only as long as
// the GgufFile that produced it. String arrays and nested arrays are decoded.
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  GgufValueType elem_type = GgufValueType::U8;  // Array: type of the elements
  uint64_t count = 0;                           // Array: number of elements
  const unsigned char* raw = nullptr;           // numeric/bool scalar, or numeric array's first element
  std::string str;                              // String
  std::vector<std::string> strings;             // Array of String
  std::vector<GgufValue> arrays;                // Array of Array

  // Typed reads; each throws InputError starting with `where` when the value
  // is of another type (or an integer outside the target's range).
  int64_t as_int(const std::string& where) const;    // any integer type
  double as_double(const std::string& where) const;  // F32, F64 or any integer type
  bool as_bool(const std::string& where) const;
  const std::string& as_string(const std::string& where) const;
  std::vector<int64_t> as_int_array(const std::string& where) const;
  std::vector<float> as_float_array(const std::string& where) const;
  const std::vector<std::string>& as_string_array(const std::string& where) const;
};

// ---- tensor types -----------------------------------------------------------

// ggml tensor type ids (ggml.h `enum ggml_type`) that streamq dequantizes; the
// container accepts every type ggml defines, only reading them is limited.
namespace ggml_type {
constexpr uint32_t F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, BF16 = 30;
}

struct GgmlTypeTraits {
  const char* name;
  uint32_t block;  // elements per block
  uint32_t bytes;  // bytes per block
};
// nullptr for an id ggml does not define (or has removed).
const GgmlTypeTraits* ggml_type_traits(uint32_t type);
// "Q4_K", or "type 77" for an unknown id.
std::string ggml_type_label(uint32_t type);
bool gguf_can_dequantize(uint32_t type);
// Dequantizes `n` elements (a multiple of the type's block size) starting at
// a block boundary. Throws InputError naming `where` and the type when the
// type is not one of ggml_type::*.
void gguf_dequantize(uint32_t type, const void* src, float* dst, int64_t n, const std::string& where);

// ---- the container ----------------------------------------------------------

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] varies fastest (HF shape reversed)
  uint32_t type = 0;
  uint64_t offset = 0;  // absolute byte offset in the file
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// Defaults and limits of the format.
constexpr uint64_t kGgufDefaultAlignment = 32;
constexpr uint32_t kGgufMaxDims = 4;

// The streamq-facing tokenizer of a GGUF (tokenizer.ggml.*).
struct GgufTokenizer {
  std::string model;  // "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
  std::string pre;    // pre-tokenizer name, "" when absent
  std::vector<std::string> tokens;
  std::vector<std::string> merges;   // "left right"
  std::vector<int64_t> token_type;   // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  int64_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false;
  std::string chat_template;
};

// One .gguf file, opened and validated: magic, version (2 or 3), every length
// bounded by the file before anything is allocated for it, value types, tensor
// infos (n_dims <= 4, no element-count overflow, known type, ne[0] a multiple
// of the block size, aligned offsets inside the file, no overlaps, unique
// names). Every failure throws InputError naming the file (and tensor or key).
// When general.architecture is "llama" the HF view is built and checked too
// (every tensor mapped, every expected tensor present with the config's shape).
// Const methods only read the mapping, so threads may share one GgufFile.
class GgufFile {
 public:
  static std::unique_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_start() const { return data_start_; }

  // Metadata, in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;  // nullptr if absent
  // Typed metadata; the one-argument forms throw InputError naming the file
  // and key when it is absent, all of them when it has another type.
  int64_t meta_int(const std::string& key) const;
  int64_t meta_int(const std::string& key, int64_t fallback) const;
  double meta_double(const std::string& key, double fallback) const;
  bool meta_bool(const std::string& key, bool fallback) const;
  std::string meta_string(const std::string& key) const;
  std::string meta_string(const std::string& key, const std::string& fallback) const;
  // general.architecture, "" when absent.
  std::string architecture() const { return meta_string("general.architecture", ""); }

  // Tensors under their GGUF names, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;  // nullptr if absent
  const void* data(const GgufTensorInfo& t) const;  // zero-copy view into the mapping
  // The whole tensor dequantized, ne[0] fastest.
  std::vector<float> read_f32(const GgufTensorInfo& t) const;

  // ---- HF view (llama architecture only; others throw InputError) ----
  // HF names in the order HF checkpoints list them: embeddings, then each
  // layer, then the final norm and lm_head (absent when tied).
  std::vector<std::string> hf_tensor_names() const;
  std::vector<int64_t> hf_shape(const std::string& hf_name) const;
  // Dequantized, in HF layout ([out, in] row-major for linears), with the
  // RoPE row permutation of q/k undone.
  std::vector<float> read_hf_f32(const std::string& hf_name) const;
  // An HF LlamaConfig as JSON (hidden_size, num_key_value_heads, ...).
  nlohmann::json hf_config() const;
  // tokenizer.ggml.*; throws InputError when tokens are missing.
  GgufTokenizer tokenizer() const;

  struct HfEntry {
    std::string hf_name;
    std::size_t tensor = 0;    // index into tensors()
    int64_t rope_heads = 0;    // > 0: undo llama.cpp's q/k permutation with this many heads
  };

 private:
  GgufFile() = default;
  void parse();
  void build_llama_view();  // gguf_llama.cpp
  const HfEntry& hf_entry(const std::string& hf_name) const;

  std::string path_;
  MappedFile file_;
  uint64_t file_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_start_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::vector<HfEntry> hf_;  // empty unless the llama view was built
  std::string hf_unavailable_;  // why there is no HF view
  nlohmann::json hf_config_;
};

// byte-level BPE ("gpt2" tokenizer model) to an HF tokenizer.json equivalent to
// the one llama.cpp's converter read: vocab, merges, control/user-defined
// tokens as added tokens, and the pre-tokenizer named by tokenizer.ggml.pre
// (the supported names and their regexes are listed in gguf_tokenizer.cpp).
// Best effort: other tokenizer models or pre-tokenizers throw InputError
// naming `source` and the value.
std::string gguf_tokenizer_to_hf_json(const GgufTokenizer& tok, const std::string& source);
// tokenizer_config.json with bos/eos/unk/pad tokens, add_bos/add_eos and the
// chat template.
std::string gguf_tokenizer_config_json(const GgufTokenizer& tok, const std::string& source);

}  // namespace streamq
