// Pre-tokenizers of tokenizer.json (see pretokenizer.h). All splitting
// goes through one routine with the reference's five delimiter behaviours, so
// Split, Digits, Punctuation, Whitespace and Metaspace differ only in what
// they match.
#include "src/tokenizer/pretokenizer.h"

#include <algorithm>

#include "src/tokenizer/tokenizer_json.h"
#include "src/tokenizer/normalizer.h"
#include "src/tokenizer/regex.h"
#include "src/tokenizer/utf8.h"

namespace streamq::tok {

const char* const kGpt2SplitRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return Behavior::Removed;
  if (s == "Isolated") return Behavior::Isolated;
  if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::MergedWithNext;
  if (s == "Contiguous") return Behavior::Contiguous;
  throw InputError(where + ": unknown split behavior '" + s + "'");
}

struct Span {
  size_t start, end;
  bool is_match;
};

// Splits one piece at `matches` (sorted, non-overlapping). Mirrors the
// reference's NormalizedString::split: the matches and the gaps between them
// cover the text, `invert` swaps their roles, then `behavior` decides where
// each match goes. Consecutive matches stay separate, so a pattern matching
// one character at a time (Digits, Metaspace) behaves as the reference's
// character predicates do.
void split_piece(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches, bool invert,
                 Behavior behavior, std::vector<Piece>& out) {
  const std::string& t = piece.text;
  std::vector<Span> spans;
  size_t at = 0;
  for (auto [s, e] : matches) {
    if (s > at) spans.push_back({at, s, invert});
    spans.push_back({s, e, !invert});
    at = e;
  }
  if (at < t.size() || spans.empty()) spans.push_back({at, t.size(), invert});

  std::vector<std::pair<size_t, size_t>> parts;
  switch (behavior) {
    case Behavior::Removed:
      for (const Span& s : spans)
        if (!s.is_match) parts.emplace_back(s.start, s.end);
      break;
    case Behavior::Isolated:
      for (const Span& s : spans) parts.emplace_back(s.start, s.end);
      break;
    case Behavior::MergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !parts.empty()) parts.back().second = s.end;
        else parts.emplace_back(s.start, s.end);
        previous_match = s.is_match;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool previous_match = false;  // scanning right to left
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& s = spans[k];
        if (s.is_match && !previous_match && !parts.empty()) parts.back().first = s.start;
        else parts.emplace_back(s.start, s.end);
        previous_match = s.is_match;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    }
    case Behavior::Contiguous: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !parts.empty()) parts.back().second = s.end;
        else parts.emplace_back(s.start, s.end);
        previous_match = s.is_match;
      }
      break;
    }
  }
  for (auto [s, e] : parts)
    if (e > s) out.push_back({t.substr(s, e - s), piece.at_origin && s == 0});
}

std::vector<std::pair<size_t, size_t>> find_literal(std::string_view text, const std::string& literal) {
  std::vector<std::pair<size_t, size_t>> out;
  if (literal.empty()) return out;
  for (size_t at = text.find(literal); at != std::string_view::npos; at = text.find(literal, at + literal.size()))
    out.emplace_back(at, at + literal.size());
  return out;
}

// Split on a regex or a literal string.
class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(const std::string& pattern, bool is_regex, Behavior behavior, bool invert)
      : literal_(pattern), behavior_(behavior), invert_(invert) {
    if (is_regex) regex_ = std::make_unique<Regex>(pattern);
  }
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (const Piece& p : pieces) {
      if (p.text.empty()) continue;
      split_piece(p, regex_ ? regex_->find_all(p.text) : find_literal(p.text, literal_), invert_, behavior_, out);
    }
    pieces.swap(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) split_ = std::make_unique<SplitPreTokenizer>(kGpt2SplitRegex, true, Behavior::Isolated, false);
  }
  void apply(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (Piece& p : pieces)
        if (!p.text.empty() && p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (split_) split_->apply(pieces);
    for (Piece& p : pieces) p.text = byte_level_encode(p.text);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitPreTokenizer> split_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend) {
    if (split) split_ = std::make_unique<SplitPreTokenizer>(replacement_, false, Behavior::MergedWithNext, false);
  }
  void apply(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      p.text = replace_all(p.text, " ", replacement_);
      const bool starts = p.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::Always || (prepend_ == Prepend::First && p.at_origin)))
        p.text.insert(0, replacement_);
    }
    if (split_) split_->apply(pieces);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  std::unique_ptr<SplitPreTokenizer> split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// Rust's Unicode classes, spelled out for PCRE2 where the reference uses the
// Rust `regex` crate or char methods: White_Space (PCRE2's \s also takes
// U+180E) and the UTS #18 word class (PCRE2 10.42's \w lacks marks and
// joiners).
const std::string kRustSpace = R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
const std::string kRustWord = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D})";

// One character that the reference's is_punctuation accepts: ASCII punctuation
// (which includes symbols like $+<=>^`|~) or a Unicode P* character.
const char* const kPunctuationChar = R"([\p{P}!-/:-@\[-`{-~])";

std::unique_ptr<PreTokenizer> make_whitespace_split() {
  return std::make_unique<SplitPreTokenizer>("[" + kRustSpace + "]+", true, Behavior::Removed, false);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) throw InputError("pre_tokenizer must be an object or null");
  const std::string type = json_type(j);
  const std::string where = "pre_tokenizer '" + type + "'";
  if (type == "Sequence") {
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) throw InputError(where + ": missing 'pretokenizers' array");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : *it)
      if (auto pt = make_pre_tokenizer(p)) parts.push_back(std::move(pt));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(json_bool(j, "add_prefix_space", true, where),
                                                   json_bool(j, "use_regex", true, where));
  if (type == "Split") {
    bool is_regex = false;
    const std::string pattern = json_pattern(j, where, is_regex);
    return std::make_unique<SplitPreTokenizer>(pattern, is_regex,
                                               parse_behavior(json_string(j, "behavior", where), where),
                                               json_bool(j, "invert", false, where));
  }
  if (type == "Digits") {
    const bool individual = json_bool(j, "individual_digits", false, where);
    return std::make_unique<SplitPreTokenizer>(R"(\p{N})", true,
                                               individual ? Behavior::Isolated : Behavior::Contiguous, false);
  }
  if (type == "Metaspace") {
    const std::string replacement = json_string_or(j, "replacement", "\xE2\x96\x81", where);
    if (replacement.empty() || utf8_len(static_cast<unsigned char>(replacement[0])) != replacement.size())
      throw InputError(where + ": 'replacement' must be one character");
    auto prepend = MetaspacePreTokenizer::Prepend::Always;
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
      const std::string scheme = json_string(j, "prepend_scheme", where);
      if (scheme == "first") prepend = MetaspacePreTokenizer::Prepend::First;
      else if (scheme == "never") prepend = MetaspacePreTokenizer::Prepend::Never;
      else if (scheme != "always") throw InputError(where + ": unknown prepend_scheme '" + scheme + "'");
    } else if (!json_bool(j, "add_prefix_space", true, where)) {
      prepend = MetaspacePreTokenizer::Prepend::Never;
    }
    return std::make_unique<MetaspacePreTokenizer>(replacement, prepend, json_bool(j, "split", true, where));
  }
  if (type == "Punctuation")
    return std::make_unique<SplitPreTokenizer>(kPunctuationChar, true,
                                               parse_behavior(json_string_or(j, "behavior", "Isolated", where), where),
                                               false);
  if (type == "Whitespace")
    return std::make_unique<SplitPreTokenizer>("[" + kRustWord + "]+|[^" + kRustWord + kRustSpace + "]+",
                                               true, Behavior::Removed, true);
  if (type == "WhitespaceSplit") return make_whitespace_split();
  if (type == "CharDelimiterSplit") {
    const std::string delimiter = json_string(j, "delimiter", where);
    return std::make_unique<SplitPreTokenizer>(delimiter, false, Behavior::Removed, false);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.push_back(make_whitespace_split());
    parts.push_back(std::make_unique<SplitPreTokenizer>(kPunctuationChar, true, Behavior::Isolated, false));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  throw InputError("unsupported pre_tokenizer '" + type +
                   "'; streamq supports ByteLevel, Split, Digits, Metaspace, Punctuation, Whitespace, "
                   "WhitespaceSplit, CharDelimiterSplit, BertPreTokenizer and Sequence");
}

}  // namespace streamq::tok
