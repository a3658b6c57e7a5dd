// Hugging Face tokenizer.json tokenization in C++: BPE models (byte-level as
// in GPT-2, SmolLM2, Llama-3 and Qwen; SentencePiece-style with byte fallback
// as in Llama-2 and Mistral) with their normalizers, pre-tokenizers, added
// tokens, post-processors and decoders, giving the ids the reference Rust
// `tokenizers` library gives. Also the text-file reader that feeds
// calibration and evaluation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace streamq {

class Tokenizer {
 public:
  // Loads tokenizer.json, plus tokenizer_config.json and
  // special_tokens_map.json from the same directory when present (they name
  // BOS/EOS and whether to add them). Throws InputError naming the file for
  // unreadable or malformed JSON and for models other than BPE
  // ("unsupported tokenizer model 'Unigram'; streamq supports BPE").
  static std::unique_ptr<Tokenizer> load(const std::string& tokenizer_json_path);
  ~Tokenizer();

  // Token ids of `text` (UTF-8; InputError at the first invalid byte).
  // add_special applies the file's post-processor (e.g. Llama's leading <s>),
  // as the reference's add_special_tokens does; added/special tokens written
  // in the text are matched either way.
  std::vector<int32_t> encode(std::string_view text, bool add_special) const;
  // Text of `ids` through the file's decoder; InputError for an id outside the vocab.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // -1 when neither the config files nor the post-processor name one.
  int32_t bos_id() const;
  int32_t eos_id() const;
  // Whether a document starts with BOS / ends with EOS: tokenizer_config.json's
  // add_bos_token/add_eos_token when given, else what the post-processor adds.
  bool adds_bos() const;
  bool adds_eos() const;
  // One past the largest id of the model vocab and the added tokens.
  int64_t vocab_size() const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  std::string id_to_token(int32_t id) const;          // InputError when absent
  const std::string& path() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads a text file for calibration or evaluation and tokenizes it: a .jsonl
// file is one document per non-blank line (its "text" string field), any
// other file is one document. Each document is encoded on its own, with BOS
// and EOS as the tokenizer's config says when add_special is true, and the
// results are concatenated. InputError names the file (and the line of a
// .jsonl) for a missing file, a bad JSON line, a missing or non-string
// "text", or text that is not UTF-8.
std::vector<int32_t> tokenize_text_file(const std::string& path, const Tokenizer& tokenizer,
                                        bool add_special = true);

}  // namespace streamq
