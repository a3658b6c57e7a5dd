// Normalizers of tokenizer.json (see tokenizer_normalizer.h). Semantics follow
// the reference Rust `tokenizers`: Prepend skips empty text, Strip trims
// Unicode White_Space, Replace is literal for String patterns.
#include "io/tokenizer_normalizer.h"

#include <vector>

#include "io/tokenizer_json.h"
#include "io/tokenizer_regex.h"
#include "io/tokenizer_utf8.h"

namespace streamq::tok {

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t at = 0;
  while (true) {
    const size_t hit = text.find(from, at);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(at, hit - at));
    out.append(to);
    at = hit + from.size();
  }
  out.append(text.substr(at));
  return out;
}

namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string normalize(std::string_view text) const override {
    std::string s(text);
    for (const auto& p : parts_) s = p->normalize(s);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string_view text) const override {
    return text.empty() ? std::string() : prefix_ + std::string(text);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(const std::string& pattern, bool is_regex, std::string content)
      : literal_(pattern), content_(std::move(content)) {
    if (is_regex) regex_ = std::make_unique<Regex>(pattern);
  }
  std::string normalize(std::string_view text) const override {
    if (!regex_) return literal_.empty() ? std::string(text) : replace_all(text, literal_, content_);
    std::string out;
    size_t at = 0;
    for (auto [s, e] : regex_->find_all(text)) {
      out.append(text.substr(at, s - at));
      out.append(content_);
      at = e;
    }
    out.append(text.substr(at));
    return out;
  }

 private:
  std::string literal_;
  std::string content_;
  std::unique_ptr<Regex> regex_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string_view text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!is_unicode_whitespace(utf8_next(text, next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t probe = start;
        if (!is_unicode_whitespace(utf8_next(text, probe))) break;
        end = start;
      }
    }
    return std::string(text.substr(begin, end - begin));
  }

 private:
  bool left_, right_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  std::string normalize(std::string_view text) const override { return byte_level_encode(text); }
};

// NFC/NFD/NFKC/NFKD and Lowercase need Unicode data tables streamq does not
// carry. Each is exact below a bound (NFC changes nothing below U+0300, NFKC
// and NFKD nothing below U+00A0, NFD nothing below U+00C0; lowercasing below
// U+0100 is Latin-1's fixed +0x20), so text inside the bound is handled and
// text outside it is refused with the first offending character named.
class BoundedUnicodeNormalizer : public Normalizer {
 public:
  BoundedUnicodeNormalizer(std::string name, char32_t bound, bool lowercase)
      : name_(std::move(name)), bound_(bound), lowercase_(lowercase) {}
  std::string normalize(std::string_view text) const override {
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
      const size_t at = i;
      char32_t cp = utf8_next(text, i);
      if (cp >= bound_)
        throw InputError("tokenizer normalizer '" + name_ + "' is supported only for text below " +
                         code_point_name(bound_) + " (streamq carries no Unicode normalization tables); the text has " +
                         code_point_name(cp) + " at byte " + std::to_string(at));
      if (lowercase_ && ((cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7))) cp += 0x20;
      utf8_append(out, cp);
    }
    return out;
  }

 private:
  std::string name_;
  char32_t bound_;
  bool lowercase_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) throw InputError("normalizer must be an object or null");
  const std::string type = json_type(j);
  const std::string where = "normalizer '" + type + "'";
  if (type == "Sequence") {
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) throw InputError(where + ": missing 'normalizers' array");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& p : *it)
      if (auto n = make_normalizer(p)) parts.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(json_string(j, "prepend", where));
  if (type == "Replace") {
    bool is_regex = false;
    const std::string pattern = json_pattern(j, where, is_regex);
    return std::make_unique<ReplaceNormalizer>(pattern, is_regex, json_string(j, "content", where));
  }
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(json_bool(j, "strip_left", true, where),
                                             json_bool(j, "strip_right", true, where));
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "NFC") return std::make_unique<BoundedUnicodeNormalizer>(type, 0x300, false);
  if (type == "NFD") return std::make_unique<BoundedUnicodeNormalizer>(type, 0xC0, false);
  if (type == "NFKC" || type == "NFKD") return std::make_unique<BoundedUnicodeNormalizer>(type, 0xA0, false);
  if (type == "Lowercase") return std::make_unique<BoundedUnicodeNormalizer>(type, 0x100, true);
  throw InputError("unsupported normalizer '" + type +
                   "'; streamq supports Sequence, Prepend, Replace, Strip, ByteLevel and (for text "
                   "they leave unchanged) NFC/NFD/NFKC/NFKD/Lowercase");
}

}  // namespace streamq::tok
