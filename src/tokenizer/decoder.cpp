// Decoders of tokenizer.json (see decoder.h), each the reference's
// decode_chain so chains compose as they do there.
#include "src/tokenizer/decoder.h"

#include <cctype>

#include "src/tokenizer/tokenizer_json.h"
#include "src/tokenizer/normalizer.h"
#include "src/tokenizer/regex.h"
#include "src/tokenizer/utf8.h"

namespace streamq::tok {

namespace {

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& p : parts_) tokens = p->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// Byte-level characters back to bytes; a token with any character outside
// the table keeps its own UTF-8 bytes. One lossy UTF-8 string comes out.
class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      std::string mapped;
      bool all = true;
      size_t i = 0;
      while (i < t.size() && all) {
        const int b = byte_level_byte(utf8_next(t, i));
        if (b < 0) all = false;
        else mapped += static_cast<char>(b);
      }
      bytes += all ? mapped : t;
    }
    return {utf8_lossy(bytes)};
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const std::string& pattern, bool is_regex, std::string content)
      : literal_(pattern), content_(std::move(content)) {
    if (is_regex) regex_ = std::make_unique<Regex>(pattern);
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      if (!regex_) {
        if (!literal_.empty()) t = replace_all(t, literal_, content_);
        continue;
      }
      std::string out;
      size_t at = 0;
      for (auto [s, e] : regex_->find_all(t)) {
        out.append(t, at, s - at);
        out += content_;
        at = e;
      }
      out.append(t, at);
      t = std::move(out);
    }
    return tokens;
  }

 private:
  std::string literal_, content_;
  std::unique_ptr<Regex> regex_;
};

// Runs of <0xAB> tokens become their bytes when those form valid UTF-8, else
// one U+FFFD per byte.
class ByteFallbackDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (utf8_invalid_at(run) == std::string::npos) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run_len; ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
      run_len = 0;
    };
    for (std::string& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4])))
        byte = std::stoi(t.substr(3, 2), nullptr, 16);
      if (byte >= 0) {
        run += static_cast<char>(byte);
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    return out;
  }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    return {all};
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character
// from every token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
      for (size_t i = 0; i < t.size();) {
        const size_t at = i;
        chars.emplace_back(at, utf8_next(t, i));
      }
      size_t lo = 0, hi = chars.size();
      while (lo < start_ && lo < hi && chars[lo].second == content_) ++lo;
      size_t cut = 0;
      while (cut < stop_ && hi > lo && chars[hi - 1].second == content_) --hi, ++cut;
      const size_t b0 = lo < chars.size() ? chars[lo].first : t.size();
      const size_t b1 = hi < chars.size() ? chars[hi].first : t.size();
      t = t.substr(b0, b1 - b0);
    }
    return tokens;
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

// The replacement character becomes a space, except in the first token where
// it is dropped when a prefix was prepended (the reference drops every one
// there, not only the leading one).
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool drop_in_first) : replacement_(std::move(replacement)), drop_in_first_(drop_in_first) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = replace_all(tokens[i], replacement_, i == 0 && drop_in_first_ ? "" : " ");
    return tokens;
  }

 private:
  std::string replacement_;
  bool drop_in_first_;
};

// BPEDecoder: the end-of-word suffix becomes a space, except in the last token.
class SuffixDecoder : public Decoder {
 public:
  explicit SuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (!suffix_.empty()) tokens[i] = replace_all(tokens[i], suffix_, i + 1 == tokens.size() ? "" : " ");
    return tokens;
  }

 private:
  std::string suffix_;
};

char32_t single_char(const std::string& s, const std::string& where) {
  size_t i = 0;
  const char32_t cp = s.empty() ? 0 : utf8_next(s, i);
  if (s.empty() || i != s.size()) throw InputError(where + ": 'content' must be one character");
  return cp;
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  if (!j.is_object()) throw InputError("decoder must be an object or null");
  const std::string type = json_type(j);
  const std::string where = "decoder '" + type + "'";
  if (type == "Sequence") {
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array()) throw InputError(where + ": missing 'decoders' array");
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& d : *it)
      if (auto dec = make_decoder(d)) parts.push_back(std::move(dec));
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") {
    bool is_regex = false;
    const std::string pattern = json_pattern(j, where, is_regex);
    return std::make_unique<ReplaceDecoder>(pattern, is_regex, json_string(j, "content", where));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const int64_t start = json_int_or(j, "start", 0, where), stop = json_int_or(j, "stop", 0, where);
    if (start < 0 || stop < 0) throw InputError(where + ": 'start' and 'stop' must be non-negative");
    return std::make_unique<StripDecoder>(single_char(json_string(j, "content", where), where),
                                          static_cast<size_t>(start), static_cast<size_t>(stop));
  }
  if (type == "Metaspace") {
    bool drop = json_bool(j, "add_prefix_space", true, where);
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null())
      drop = json_string(j, "prepend_scheme", where) != "never";
    return std::make_unique<MetaspaceDecoder>(json_string_or(j, "replacement", "\xE2\x96\x81", where), drop);
  }
  if (type == "BPEDecoder") return std::make_unique<SuffixDecoder>(json_string_or(j, "suffix", "</w>", where));
  throw InputError("unsupported decoder '" + type +
                   "'; streamq supports ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, BPEDecoder and "
                   "Sequence");
}

}  // namespace streamq::tok
