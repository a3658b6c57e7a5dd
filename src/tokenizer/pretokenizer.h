// tokenizer.json pre-tokenizers: split normalized text into the "words" the
// BPE model sees (ByteLevel with GPT-2's regex, Split with Llama-3/Qwen style
// regexes, Digits, Metaspace, Punctuation, Whitespace, Sequence, ...).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace streamq::tok {

// A piece of text on its way to the model. `at_origin`: it starts at offset 0
// of the original input (Metaspace's prepend_scheme "first" looks at this).
struct Piece {
  std::string text;
  bool at_origin = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their sub-pieces; empty pieces are dropped, as the reference does.
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};

// nullptr for a JSON null. Throws InputError naming an unsupported type.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);

// The regex the reference's ByteLevel(use_regex=true) applies (built into
// the library, not written in tokenizer.json).
extern const char* const kGpt2SplitRegex;

}  // namespace streamq::tok
