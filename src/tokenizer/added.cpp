// Added-token matching (see added.h). Mirrors the reference's
// AddedVocabulary::find_matches on top of an Aho-Corasick leftmost-longest
// scan: the scan moves past every match, even one that single_word then
// discards, and lstrip/rstrip widen a kept match over adjacent whitespace.
#include "src/tokenizer/added.h"

#include <algorithm>

#include "src/tokenizer/regex.h"
#include "src/tokenizer/utf8.h"

namespace streamq::tok {

namespace {

// Whether the character ending at `end` (resp. starting at `start`) is a
// word character: the Rust regex crate's Unicode \w, which the reference
// uses (PCRE2 10.42's \w lacks marks and joiners).
const Regex& word_char() {
  static const Regex re(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])");
  return re;
}

bool ends_with_word(std::string_view text, size_t end) {
  if (end == 0) return false;
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return word_char().matches_at(text.substr(0, end), start);
}

bool starts_with_word(std::string_view text, size_t start) {
  return start < text.size() && word_char().matches_at(text, start);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens)
    : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  for (size_t p = 0; p < patterns.size(); ++p) {
    const std::string& pat = patterns[p];
    if (pat.empty()) continue;  // the reference ignores empty tokens
    first_byte_[static_cast<unsigned char>(pat[0])] = true;
    int32_t node = 0;
    for (char ch : pat) {
      const auto c = static_cast<unsigned char>(ch);
      auto& kids = nodes_[node].children;
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, INT32_MIN));
      if (it != kids.end() && it->first == c) {
        node = it->second;
      } else {
        const auto fresh = static_cast<int32_t>(nodes_.size());
        kids.insert(it, {c, fresh});
        nodes_.emplace_back();
        node = fresh;
      }
    }
    // Two tokens with the same text: the first keeps it.
    if (nodes_[node].pattern < 0) nodes_[node].pattern = static_cast<int>(p);
  }
}

int AddedTokenMatcher::longest_at(std::string_view text, size_t at, size_t& length) const {
  int found = -1;
  int32_t node = 0;
  for (size_t k = at; k < text.size(); ++k) {
    const auto c = static_cast<unsigned char>(text[k]);
    const auto& kids = nodes_[node].children;
    auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, INT32_MIN));
    if (it == kids.end() || it->first != c) break;
    node = it->second;
    if (nodes_[node].pattern >= 0) {
      found = nodes_[node].pattern;
      length = k + 1 - at;
    }
  }
  return found;
}

std::vector<AddedSegment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<AddedSegment> out;
  size_t done = 0;  // end of the last segment emitted
  size_t at = 0;    // where the scan resumes
  while (at < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[at])]) {
      ++at;
      continue;
    }
    size_t length = 0;
    const int p = longest_at(text, at, length);
    if (p < 0) {
      ++at;
      continue;
    }
    size_t start = at, stop = at + length;
    at = stop;
    const AddedToken& tok = tokens_[p];
    if (start < done) continue;  // inside a previous token's rstrip; cannot split there
    if (tok.single_word && (ends_with_word(text, start) || starts_with_word(text, stop))) continue;
    if (tok.lstrip) {
      size_t s = start;
      while (s > done) {
        size_t c0 = s - 1;
        while (c0 > 0 && (static_cast<unsigned char>(text[c0]) & 0xC0) == 0x80) --c0;
        size_t probe = c0;
        if (!is_unicode_whitespace(utf8_next(text, probe))) break;
        s = c0;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t probe = stop;
        if (!is_unicode_whitespace(utf8_next(text, probe))) break;
        stop = probe;
      }
      at = std::max(at, stop);
    }
    if (start > done) out.push_back({done, start, -1});
    out.push_back({start, stop, p});
    done = stop;
  }
  if (done < text.size()) out.push_back({done, text.size(), -1});
  return out;
}

}  // namespace streamq::tok
