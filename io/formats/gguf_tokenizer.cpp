// The tokenizer embedded in a GGUF (tokenizer.ggml.*) and its best-effort
// conversion back to HF tokenizer.json / tokenizer_config.json for byte-level
// BPE ("gpt2") tokenizers, the inverse of what llama.cpp's converter stored.
#include <set>

#include "src/core/error.h"
#include "io/formats/gguf.h"

namespace streamq {

using ojson = nlohmann::ordered_json;

GgufTokenizer GgufFile::tokenizer() const {
  const auto where = [&](const std::string& key) { return path_ + ": metadata '" + key + "'"; };
  GgufTokenizer t;
  t.model = meta_string("tokenizer.ggml.model");
  t.pre = meta_string("tokenizer.ggml.pre", "");
  const GgufValue* tokens = find("tokenizer.ggml.tokens");
  if (!tokens) throw InputError(path_ + ": missing metadata 'tokenizer.ggml.tokens'");
  t.tokens = tokens->as_string_array(where("tokenizer.ggml.tokens"));
  if (const GgufValue* m = find("tokenizer.ggml.merges")) t.merges = m->as_string_array(where("tokenizer.ggml.merges"));
  if (const GgufValue* tt = find("tokenizer.ggml.token_type")) {
    t.token_type = tt->as_int_array(where("tokenizer.ggml.token_type"));
    if (t.token_type.size() != t.tokens.size())
      throw InputError(where("tokenizer.ggml.token_type") + " has " + std::to_string(t.token_type.size()) +
                       " entries for " + std::to_string(t.tokens.size()) + " tokens");
  }
  const auto id = [&](const std::string& key) {
    const int64_t v = meta_int(key, -1);
    if (v < -1 || v >= static_cast<int64_t>(t.tokens.size()))
      throw InputError(where(key) + " is " + std::to_string(v) + ", outside the " + std::to_string(t.tokens.size()) +
                       "-token vocabulary");
    return v;
  };
  t.bos_id = id("tokenizer.ggml.bos_token_id");
  t.eos_id = id("tokenizer.ggml.eos_token_id");
  t.unk_id = id("tokenizer.ggml.unknown_token_id");
  t.pad_id = id("tokenizer.ggml.padding_token_id");
  t.add_bos = meta_bool("tokenizer.ggml.add_bos_token", false);
  t.add_eos = meta_bool("tokenizer.ggml.add_eos_token", false);
  t.chat_template = meta_string("tokenizer.chat_template", "");
  return t;
}

namespace {

constexpr int64_t kTokenUnknown = 2, kTokenControl = 3, kTokenUserDefined = 4;

// Pre-tokenizers for the tokenizer.ggml.pre values supported here. Each is
// what the HF tokenizer.json of that family holds, and splits text the way
// llama.cpp's llama-vocab.cpp regexes for the same name do:
//   "smollm" (SmolLM/SmolLM2): Digits(individual) then ByteLevel with the
//     built-in GPT-2 regex; llama.cpp: "\p{N}" then the GPT-2 regex.
//   "gpt2", "default" or absent: ByteLevel with the GPT-2 regex
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   "llama-bpe"/"llama3" and "qwen2": a Split on the regex below (Isolated),
//     then ByteLevel without its regex.
constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

ojson byte_level(bool use_regex, bool trim_offsets = true) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", trim_offsets}, {"use_regex", use_regex}};
}

ojson split(const char* regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

struct PreTokenizer {
  ojson normalizer;
  ojson pre;
  bool ignore_merges = false;
};

PreTokenizer pre_tokenizer_for(const std::string& pre, const std::string& source) {
  PreTokenizer p;
  if (pre == "smollm") {
    p.pre = {{"type", "Sequence"},
             {"pretokenizers", ojson::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)})}};
  } else if (pre.empty() || pre == "gpt2" || pre == "default") {
    p.pre = byte_level(true);
  } else if (pre == "llama-bpe" || pre == "llama3") {
    p.pre = {{"type", "Sequence"}, {"pretokenizers", ojson::array({split(kLlama3Regex), byte_level(false)})}};
    p.ignore_merges = true;  // Llama 3 looks whole pre-tokens up in the vocab first
  } else if (pre == "qwen2") {
    p.normalizer = {{"type", "NFC"}};
    p.pre = {{"type", "Sequence"}, {"pretokenizers", ojson::array({split(kQwen2Regex), byte_level(false, false)})}};
  } else {
    throw InputError(source + ": tokenizer.ggml.pre '" + pre +
                     "' has no known HF equivalent (supported: smollm, gpt2, default, llama-bpe, llama3, qwen2)");
  }
  return p;
}

const std::string& token_at(const GgufTokenizer& tok, int64_t id) { return tok.tokens[static_cast<std::size_t>(id)]; }

// BOS/EOS added around each sequence when the GGUF asks for them.
ojson post_processor(const GgufTokenizer& tok) {
  const bool bos = tok.add_bos && tok.bos_id >= 0, eos = tok.add_eos && tok.eos_id >= 0;
  if (!bos && !eos) return nullptr;
  ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
  const auto special = [&](int64_t id, int type_id) {
    return ojson{{"SpecialToken", {{"id", token_at(tok, id)}, {"type_id", type_id}}}};
  };
  const auto add_special = [&](int64_t id) {
    specials[token_at(tok, id)] = {{"id", token_at(tok, id)}, {"ids", ojson::array({id})},
                                   {"tokens", ojson::array({token_at(tok, id)})}};
  };
  for (int seq = 0; seq < 2; ++seq) {
    ojson& tmpl = seq == 0 ? single : pair;
    for (int part = 0; part <= seq; ++part) {
      if (bos) tmpl.push_back(special(tok.bos_id, part));
      tmpl.push_back({{"Sequence", {{"id", part == 0 ? "A" : "B"}, {"type_id", part}}}});
      if (eos) tmpl.push_back(special(tok.eos_id, part));
    }
  }
  if (bos) add_special(tok.bos_id);
  if (eos) add_special(tok.eos_id);
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

// nlohmann refuses to write invalid UTF-8; a token that is not text cannot be
// a JSON key, so it is the GGUF's fault.
std::string dump(const ojson& j, const std::string& source, int indent) {
  try {
    return j.dump(indent) + "\n";
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source + ": tokenizer holds a string that is not valid UTF-8: " + e.what());
  }
}

}  // namespace

std::string gguf_tokenizer_to_hf_json(const GgufTokenizer& tok, const std::string& source) {
  if (tok.model != "gpt2")
    throw InputError(source + ": tokenizer.ggml.model '" + tok.model +
                     "' cannot be converted to tokenizer.json (only 'gpt2', byte-level BPE, is supported)");
  if (tok.merges.empty()) throw InputError(source + ": byte-level BPE tokenizer without tokenizer.ggml.merges");
  const PreTokenizer pre = pre_tokenizer_for(tok.pre, source);

  ojson added = ojson::array();
  // The vocab keeps id order, as HF writes it. ordered_json's own insert
  // searches its vector linearly (quadratic for a 50k vocabulary), so with
  // uniqueness checked here the pairs are appended to that vector directly.
  ojson vocab = ojson::object();
  auto& entries = vocab.get_ref<ojson::object_t&>();
  using Entries = ojson::object_t::Container;
  static_cast<Entries&>(entries).reserve(tok.tokens.size());
  std::set<std::string> seen;
  for (std::size_t id = 0; id < tok.tokens.size(); ++id) {
    const std::string& s = tok.tokens[id];
    if (!seen.insert(s).second)
      throw InputError(source + ": token " + std::to_string(id) + " '" + s +
                       "' appears twice in tokenizer.ggml.tokens");
    static_cast<Entries&>(entries).emplace_back(s, ojson(id));
    const int64_t type = tok.token_type.empty() ? 1 : tok.token_type[id];
    if (type != kTokenControl && type != kTokenUserDefined && type != kTokenUnknown) continue;
    const bool special = type != kTokenUserDefined;
    added.push_back({{"id", id}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", !special}, {"special", special}});
  }
  ojson merges = ojson::array();
  for (const std::string& m : tok.merges) merges.push_back(m);

  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = pre.normalizer;
  j["pre_tokenizer"] = pre.pre;
  j["post_processor"] = post_processor(tok);
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"},          {"dropout", nullptr},
                {"unk_token", nullptr},   {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                {"byte_fallback", false}, {"ignore_merges", pre.ignore_merges},
                {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
  return dump(j, source, 2);
}

std::string gguf_tokenizer_config_json(const GgufTokenizer& tok, const std::string& source) {
  ojson j;
  j["add_bos_token"] = tok.add_bos;
  j["add_eos_token"] = tok.add_eos;
  const auto token = [&](const char* key, int64_t id) {
    if (id >= 0) j[key] = token_at(tok, id);
  };
  token("bos_token", tok.bos_id);
  token("eos_token", tok.eos_id);
  token("unk_token", tok.unk_id);
  token("pad_token", tok.pad_id);
  if (!tok.chat_template.empty()) j["chat_template"] = tok.chat_template;
  j["clean_up_tokenization_spaces"] = false;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  return dump(j, source, 2);
}

}  // namespace streamq
