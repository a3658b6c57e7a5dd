// Normalizers of tokenizer.json (see normalizer.h). Semantics follow
// the reference Rust `tokenizers`: Prepend skips empty text, Strip trims
// Unicode White_Space, Replace is literal for String patterns, the Unicode
// forms and Lowercase come from ICU.
#include "src/tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/normalizer2.h>
#include <unicode/uniset.h>
#include <unicode/utypes.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "src/tokenizer/tokenizer_json.h"
#include "src/tokenizer/regex.h"
#include "src/tokenizer/utf8.h"

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

// ICU takes lengths as int32_t.
icu::StringPiece icu_piece(std::string_view text) {
  if (text.size() > static_cast<size_t>(INT32_MAX))
    throw InputError("text of " + std::to_string(text.size()) + " bytes is too long to normalize in one piece");
  return icu::StringPiece(text.data(), static_cast<int32_t>(text.size()));
}

// NFC/NFD/NFKC/NFKD through ICU's normalizers, which work on UTF-8 directly.
// The reference's tables (crate unicode-normalization-alignments) are Unicode
// 9.0: characters assigned later neither decompose, compose nor reorder (e.g.
// U+32FF, Unicode 12.1, stays as is under NFKC). ICU's FilteredNormalizer2
// restricted to [:age=9.0:] gives exactly that: other characters are copied
// and act as boundaries. ICU failures (missing data, allocation) are the
// machine's, so InternalError.
class UnicodeFormNormalizer : public Normalizer {
 public:
  using Getter = const icu::Normalizer2* (*)(UErrorCode&);
  UnicodeFormNormalizer(const std::string& name, Getter get) : name_(name) {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* form = get(status);
    if (U_SUCCESS(status)) unicode_9_ = std::make_unique<icu::UnicodeSet>(icu::UnicodeString("[:age=9.0:]"), status);
    if (U_FAILURE(status)) throw InternalError("normalizer '" + name + "': ICU: " + u_errorName(status));
    unicode_9_->freeze();
    form_ = std::make_unique<icu::FilteredNormalizer2>(*form, *unicode_9_);
  }
  std::string normalize(std::string_view text) const override {
    std::string out;
    out.reserve(text.size());
    icu::StringByteSink<std::string> sink(&out);
    UErrorCode status = U_ZERO_ERROR;
    form_->normalizeUTF8(0, icu_piece(text), sink, nullptr, status);
    if (U_FAILURE(status)) throw InternalError("normalizer '" + name_ + "': ICU: " + u_errorName(status));
    return out;
  }

 private:
  std::string name_;
  std::unique_ptr<icu::UnicodeSet> unicode_9_;        // before form_, which refers to it
  std::unique_ptr<icu::FilteredNormalizer2> form_;  // wraps an ICU-owned singleton
};

// The reference lowercases with Rust's char::to_lowercase, one character at a
// time: the full (SpecialCasing) mapping, locale-free, so U+0130 becomes
// "i\u0307", but with no context. ICU's root-locale toLower is the same
// mapping except for (1) the final-sigma rule: the reference maps every
// capital sigma to U+03C3, never U+03C2; (2) Unicode versions: the reference's
// Rust std has Unicode 17, Debian's ICU 72 has 15.0, which lacks the case pairs
// below. Those code points are mapped here and everything between them by ICU;
// the table is right for any ICU version. (Checked on every code point against
// HF tokenizers 0.23.3: no other differences.)
class LowercaseNormalizer : public Normalizer {
 public:
  std::string normalize(std::string_view text) const override {
    std::string out;
    out.reserve(text.size());
    icu::StringByteSink<std::string> sink(&out);
    auto lower_run = [&](std::string_view run) {
      UErrorCode status = U_ZERO_ERROR;
      icu::CaseMap::utf8ToLower("", 0, icu_piece(run), sink, nullptr, status);
      if (U_FAILURE(status)) throw InternalError(std::string("normalizer 'Lowercase': ICU: ") + u_errorName(status));
    };
    size_t run_start = 0, i = 0;
    while (i < text.size()) {
      const size_t at = i;
      const char32_t cp = utf8_next(text, i);
      if (cp < kOverrides[0].first) continue;
      for (const Override& o : kOverrides) {
        if (cp < o.first || cp > o.last) continue;
        lower_run(text.substr(run_start, at - run_start));
        utf8_append(out, o.lower_of_first + (cp - o.first));
        run_start = i;
        break;
      }
    }
    lower_run(text.substr(run_start));
    return out;
  }

 private:
  // Code points first..last lowercase to lower_of_first + (cp - first).
  struct Override {
    char32_t first, last, lower_of_first;
  };
  static constexpr Override kOverrides[] = {
      {0x03A3, 0x03A3, 0x03C3},  // capital sigma, never final sigma
      // Case pairs added after Unicode 15 (Latin, Cyrillic, Garay, Beria Erfe).
      {0x1C89, 0x1C89, 0x1C8A},
      {0xA7CB, 0xA7CB, 0x0264},
      {0xA7CC, 0xA7CC, 0xA7CD},
      {0xA7CE, 0xA7CE, 0xA7CF},
      {0xA7D2, 0xA7D2, 0xA7D3},
      {0xA7D4, 0xA7D4, 0xA7D5},
      {0xA7DA, 0xA7DA, 0xA7DB},
      {0xA7DC, 0xA7DC, 0x019B},
      {0x10D50, 0x10D65, 0x10D70},
      {0x16EA0, 0x16EB8, 0x16EBB},
  };
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
  if (type == "NFC") return std::make_unique<UnicodeFormNormalizer>(type, &icu::Normalizer2::getNFCInstance);
  if (type == "NFD") return std::make_unique<UnicodeFormNormalizer>(type, &icu::Normalizer2::getNFDInstance);
  if (type == "NFKC") return std::make_unique<UnicodeFormNormalizer>(type, &icu::Normalizer2::getNFKCInstance);
  if (type == "NFKD") return std::make_unique<UnicodeFormNormalizer>(type, &icu::Normalizer2::getNFKDInstance);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  throw InputError("unsupported normalizer '" + type +
                   "'; streamq supports Sequence, Prepend, Replace, Strip, ByteLevel, NFC, NFD, NFKC, NFKD "
                   "and Lowercase");
}

}  // namespace streamq::tok
