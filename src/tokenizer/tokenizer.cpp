// Tokenizer: loads tokenizer.json (+ tokenizer_config.json) and runs the
// reference pipeline: added tokens on the raw text -> normalizer -> added
// tokens on the normalized text -> pre-tokenizer -> BPE -> post-processor.
#include "src/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "src/tokenizer/added.h"
#include "src/tokenizer/bpe.h"
#include "src/tokenizer/decoder.h"
#include "src/tokenizer/tokenizer_json.h"
#include "src/tokenizer/normalizer.h"
#include "src/tokenizer/post.h"
#include "src/tokenizer/pretokenizer.h"
#include "src/tokenizer/utf8.h"

namespace streamq {

using tok::json;

struct Tokenizer::Impl {
  std::string path;
  std::unique_ptr<tok::BpeModel> model;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::Decoder> decoder;
  std::unique_ptr<tok::PostProcessor> post;
  std::vector<tok::AddedToken> added;
  // What decode writes for each added token and whether skip_special drops
  // it. The reference writes a normalized token in its normalized form, and
  // then no longer recognizes it as special: both quirks are kept.
  std::vector<std::string> added_text;
  std::vector<bool> added_skippable;
  std::unordered_map<int32_t, size_t> added_by_id;
  tok::StringMap<int32_t> added_by_content;
  std::unique_ptr<tok::AddedTokenMatcher> raw_matcher;         // normalized: false
  std::unique_ptr<tok::AddedTokenMatcher> normalized_matcher;  // normalized: true
  int32_t bos = -1, eos = -1;
  bool add_bos = false, add_eos = false;

  int32_t token_to_id(std::string_view token) const {
    if (auto it = added_by_content.find(token); it != added_by_content.end()) return it->second;
    return model->token_to_id(token);
  }
  void encode_normalized(std::string_view text, bool at_origin, std::vector<int32_t>& ids) const;
  void resolve_bos_eos(const std::string& dir);
};

namespace {

std::vector<tok::AddedToken> parse_added_tokens(const json& root) {
  std::vector<tok::AddedToken> out;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return out;
  if (!it->is_array()) throw InputError("'added_tokens' must be an array");
  for (const json& a : *it) {
    tok::AddedToken t;
    const std::string where = "added token " + a.dump();
    t.content = tok::json_string(a, "content", where);
    const int64_t id = tok::json_int_or(a, "id", -1, where);
    if (id < 0 || id > INT32_MAX) throw InputError(where + ": needs a non-negative 'id'");
    t.id = static_cast<int32_t>(id);
    t.single_word = tok::json_bool(a, "single_word", false, where);
    t.lstrip = tok::json_bool(a, "lstrip", false, where);
    t.rstrip = tok::json_bool(a, "rstrip", false, where);
    t.special = tok::json_bool(a, "special", false, where);
    // The reference's default: special tokens are matched on the raw text.
    t.normalized = tok::json_bool(a, "normalized", !t.special, where);
    out.push_back(std::move(t));
  }
  return out;
}

std::unique_ptr<tok::BpeModel> make_model(const json& root) {
  auto it = root.find("model");
  if (it == root.end() || !it->is_object()) throw InputError("no 'model' object");
  const json& m = *it;
  std::string type = tok::json_type(m);
  if (type.empty()) {
    // Old files (GPT-2's) omit the type; the reference then tries each model's
    // fields in turn. BPE is the one with vocab and merges.
    if (m.contains("vocab") && m.contains("merges")) type = "BPE";
    else if (m.contains("vocab") && m["vocab"].is_array()) type = "Unigram";
    else if (m.contains("max_input_chars_per_word")) type = "WordPiece";
    else if (m.contains("vocab")) type = "WordLevel";
    else throw InputError("model has no 'vocab'");
  }
  if (type != "BPE") throw InputError("unsupported tokenizer model '" + type + "'; streamq supports BPE");
  return std::make_unique<tok::BpeModel>(m);
}

// A config's bos_token/eos_token: a string, an {"content": ...} object, or absent/null.
std::string config_token(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  throw InputError(std::string("'") + key + "' must be a string or an object with 'content'");
}

json read_optional_json(const std::string& path) {
  if (!std::filesystem::exists(path)) return json::object();
  try {
    json j = json::parse(read_file(path));
    if (!j.is_object()) throw InputError(path + ": expected a JSON object");
    return j;
  } catch (const json::exception& e) {
    throw InputError(path + ": not valid JSON: " + e.what());
  }
}

}  // namespace

// BOS/EOS from tokenizer_config.json, then special_tokens_map.json, then the
// post-processor's template; whether to add them likewise.
void Tokenizer::Impl::resolve_bos_eos(const std::string& dir) {
  Impl& t = *this;
  const std::string config_path = dir + "/tokenizer_config.json";
  const std::string map_path = dir + "/special_tokens_map.json";
  const json config = read_optional_json(config_path);
  const json map = read_optional_json(map_path);
  auto resolve = [&](const char* key, const std::vector<int32_t>& from_template) -> int32_t {
    std::string name, source;
    try {
      name = config_token(config, key), source = config_path;
      if (name.empty()) name = config_token(map, key), source = map_path;
    } catch (const InputError& e) {
      throw InputError(source + ": " + e.what());
    }
    if (name.empty()) return from_template.empty() ? -1 : from_template.front();
    const int32_t id = t.token_to_id(name);
    if (id < 0) throw InputError(source + ": " + key + " '" + name + "' is not in the tokenizer's vocab");
    return id;
  };
  const std::vector<int32_t> none;
  t.bos = resolve("bos_token", t.post ? t.post->before : none);
  t.eos = resolve("eos_token", t.post ? t.post->after : none);
  t.add_bos = tok::json_bool(config, "add_bos_token", t.post && !t.post->before.empty(), config_path);
  t.add_eos = tok::json_bool(config, "add_eos_token", t.post && !t.post->after.empty(), config_path);
  if (t.add_bos && t.bos < 0) throw InputError(config_path + ": add_bos_token is true but no bos_token is named");
  if (t.add_eos && t.eos < 0) throw InputError(config_path + ": add_eos_token is true but no eos_token is named");
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& tokenizer_json_path) {
  std::unique_ptr<Tokenizer> result(new Tokenizer());
  Impl& t = *result->impl_;
  t.path = tokenizer_json_path;
  const std::string text = read_file(tokenizer_json_path);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw InputError(tokenizer_json_path + ": not valid JSON: " + e.what());
  }
  try {
    if (!root.is_object()) throw InputError("expected a JSON object at the top level");
    t.model = make_model(root);
    t.normalizer = tok::make_normalizer(root.value("normalizer", json()));
    t.pre_tokenizer = tok::make_pre_tokenizer(root.value("pre_tokenizer", json()));
    t.decoder = tok::make_decoder(root.value("decoder", json()));
    t.post = tok::make_post_processor(root.value("post_processor", json()));
    // truncation and padding are ignored: streamq encodes whole documents.

    t.added = parse_added_tokens(root);
    tok::StringMap<bool> special_contents;
    for (const tok::AddedToken& a : t.added)
      if (a.special) special_contents.emplace(a.content, true);
    std::vector<std::string> raw_patterns, norm_patterns;
    std::vector<tok::AddedToken> raw_tokens, norm_tokens;
    for (size_t i = 0; i < t.added.size(); ++i) {
      const tok::AddedToken& a = t.added[i];
      t.added_by_id.emplace(a.id, i);
      t.added_by_content.emplace(a.content, a.id);
      // A normalized token is matched on normalized text, so in its normalized form.
      t.added_text.push_back(a.normalized && t.normalizer ? t.normalizer->normalize(a.content) : a.content);
      t.added_skippable.push_back(special_contents.count(t.added_text.back()) > 0);
      (a.normalized ? norm_patterns : raw_patterns).push_back(t.added_text.back());
      (a.normalized ? norm_tokens : raw_tokens).push_back(a);
    }
    t.raw_matcher = std::make_unique<tok::AddedTokenMatcher>(std::move(raw_patterns), std::move(raw_tokens));
    t.normalized_matcher = std::make_unique<tok::AddedTokenMatcher>(std::move(norm_patterns), std::move(norm_tokens));
  } catch (const InputError& e) {
    throw InputError(tokenizer_json_path + ": " + e.what());
  } catch (const json::exception& e) {
    throw InputError(tokenizer_json_path + ": malformed tokenizer.json: " + e.what());
  }
  const std::string dir = std::filesystem::path(tokenizer_json_path).parent_path().string();
  t.resolve_bos_eos(dir.empty() ? "." : dir);
  return result;
}

void Tokenizer::Impl::encode_normalized(std::string_view text, bool at_origin, std::vector<int32_t>& ids) const {
  std::vector<tok::Piece> pieces;
  for (const tok::AddedSegment& seg : normalized_matcher->split(text)) {
    if (seg.token >= 0) {
      ids.push_back(normalized_matcher->token(seg.token).id);
      continue;
    }
    pieces.assign(1, tok::Piece{std::string(text.substr(seg.start, seg.end - seg.start)), at_origin && seg.start == 0});
    if (pre_tokenizer) pre_tokenizer->apply(pieces);
    for (const tok::Piece& p : pieces) model->tokenize(p.text, ids);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  if (const size_t bad = tok::utf8_invalid_at(text); bad != std::string_view::npos)
    throw InputError("text to tokenize is not valid UTF-8 at byte " + std::to_string(bad));
  const Impl& t = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const tok::AddedSegment& seg : t.raw_matcher->split(text)) {
    if (seg.token >= 0) {
      ids.push_back(t.raw_matcher->token(seg.token).id);
      continue;
    }
    const std::string_view piece = text.substr(seg.start, seg.end - seg.start);
    if (t.normalizer) t.encode_normalized(t.normalizer->normalize(piece), seg.start == 0, ids);
    else t.encode_normalized(piece, seg.start == 0, ids);
  }
  if (add_special && t.post) t.post->apply(ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    if (auto it = t.added_by_id.find(id); it != t.added_by_id.end()) {
      if (!(skip_special && t.added_skippable[it->second])) tokens.push_back(t.added_text[it->second]);
    } else if (const std::string* s = t.model->id_to_token(id)) {
      tokens.push_back(*s);
    } else {
      throw InputError("token id " + std::to_string(id) + " is not in the vocab of " + t.path);
    }
  }
  std::string out;
  if (t.decoder) {
    for (const std::string& s : t.decoder->decode_chain(std::move(tokens))) out += s;
  } else {
    // The reference joins with spaces when the file has no decoder.
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
  }
  return out;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::adds_bos() const { return impl_->add_bos; }
bool Tokenizer::adds_eos() const { return impl_->add_eos; }

int64_t Tokenizer::vocab_size() const {
  int64_t n = impl_->model->id_bound();
  for (const tok::AddedToken& a : impl_->added) n = std::max<int64_t>(n, int64_t{a.id} + 1);
  return n;
}

int32_t Tokenizer::token_to_id(std::string_view token) const { return impl_->token_to_id(token); }

std::string Tokenizer::id_to_token(int32_t id) const {
  if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) return impl_->added_text[it->second];
  if (const std::string* s = impl_->model->id_to_token(id)) return *s;
  throw InputError("token id " + std::to_string(id) + " is not in the vocab of " + impl_->path);
}

const std::string& Tokenizer::path() const { return impl_->path; }

}  // namespace streamq
