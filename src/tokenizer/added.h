// Added tokens of tokenizer.json (special tokens such as <s> or <|im_start|>
// and user-added ones): found in the text before the model runs, with the
// reference's leftmost-longest matching and lstrip/rstrip/single_word rules.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace streamq::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A stretch of text: either an added token (token >= 0, index into the
// tokens given to the matcher) or plain text (token == -1).
struct AddedSegment {
  size_t start, end;
  int token;
};

// Finds one group of added tokens (the reference keeps two: those matched on
// the raw text and those matched on normalized text).
class AddedTokenMatcher {
 public:
  // `patterns[i]` is what token i looks like in the text it is matched on.
  AddedTokenMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  const AddedToken& token(int i) const { return tokens_[static_cast<size_t>(i)]; }
  // Segments covering `text` (valid UTF-8) in order; empty plain segments are omitted.
  std::vector<AddedSegment> split(std::string_view text) const;

 private:
  // Leftmost-longest search over a byte trie: a match starting at `at`, the
  // longest there. Returns the pattern index or -1, and the match length.
  int longest_at(std::string_view text, size_t at, size_t& length) const;

  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int pattern = -1;
  };
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
  std::vector<AddedToken> tokens_;
};

}  // namespace streamq::tok
