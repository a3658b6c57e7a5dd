// The tokenizer's regular expressions: PCRE2 with UTF and Unicode properties
// (PCRE2_UCP, so \s \w \p{L} \p{N} are Unicode-aware as in the reference's
// Oniguruma), JIT-compiled where the platform allows.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace streamq::tok {

class Regex {
 public:
  // Throws InputError quoting the pattern and PCRE2's message when it does not compile.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping, non-empty matches [start, end) from left to right.
  // `text` must be valid UTF-8 (checked once by the caller, not per call).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  // Whether the regex matches at exactly `offset` (an anchored match).
  bool matches_at(std::string_view text, size_t offset) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept out of the header
};

}  // namespace streamq::tok
