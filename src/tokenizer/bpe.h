// The BPE model of tokenizer.json: vocab, ranked merges, byte fallback and
// unknown-token handling, applied to one pre-token ("word") at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace streamq::tok {

// Transparent hashing so lookups by string_view allocate nothing.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object. Throws InputError (the caller
  // adds the file name) for a missing vocab, a malformed merge or a merge
  // whose parts or result are not in the vocab.
  explicit BpeModel(const nlohmann::json& model);

  // Appends the ids of one non-empty pre-token (valid UTF-8).
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  const std::string* id_to_token(int32_t id) const;    // nullptr when absent
  int64_t id_bound() const { return static_cast<int64_t>(id_to_token_.size()); }  // max id + 1

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void add_merge(const std::string& left, const std::string& right, uint32_t rank);
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> id_present_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::string unk_token_;  // empty: unknown characters are dropped, as the reference does
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix
  int32_t byte_ids_[256];  // "<0xAB>" tokens for byte fallback, -1 when absent

  // Words seen before (short ones only, bounded like the reference's cache).
  mutable std::mutex cache_mutex_;
  mutable StringMap<std::vector<int32_t>> cache_;
};

}  // namespace streamq::tok
