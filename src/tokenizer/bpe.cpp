// BPE encoding (see bpe.h). The merge loop is the reference's:
// a min-heap of candidate pairs keyed by (merge rank, position), entries
// checked for staleness when popped, so a word of n symbols costs O(n log n).
#include "src/tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "src/core/error.h"
#include "src/tokenizer/tokenizer_json.h"
#include "src/tokenizer/utf8.h"

namespace streamq::tok {

namespace {

// The reference caches words shorter than 256 bytes, up to 10,000 of them.
constexpr size_t kCacheMaxWordBytes = 256;
constexpr size_t kCacheMaxEntries = 10000;

// Splits a "left right" merge on the ASCII space only: tokens may hold other
// whitespace (Llama-2 has U+00A0 merges), and a merge with more or fewer than
// one space is malformed, as in the reference.
bool split_merge_string(const std::string& s, std::string& left, std::string& right) {
  const size_t sp = s.find(' ');
  if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) return false;
  left = s.substr(0, sp);
  right = s.substr(sp + 1);
  return true;
}

}  // namespace

BpeModel::BpeModel(const json& model) {
  const std::string where = "model";
  auto vocab = model.find("vocab");
  if (vocab == model.end() || vocab->is_null()) throw InputError("BPE model has no 'vocab'");
  if (!vocab->is_object()) throw InputError("BPE model 'vocab' must be an object of token -> id");
  vocab_.reserve(vocab->size());
  int64_t max_id = -1;
  // The id -> token table is as long as the largest id: ids past 2^24 (the
  // largest real vocabularies hold ~256k) would make it gigabytes
  // (fuzz_tokenizer: one id of 55 million asked for 1.76 GB).
  constexpr int64_t kMaxVocabId = int64_t{1} << 24;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      throw InputError("BPE vocab entry '" + it.key() + "' must have a non-negative integer id");
    if (it.value().get<int64_t>() >= kMaxVocabId)
      throw InputError("BPE vocab entry '" + it.key() + "' has id " + std::to_string(it.value().get<int64_t>()) +
                       ", past the 16,777,216 ids streamq reads");
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    vocab_.emplace(it.key(), id);
    max_id = std::max<int64_t>(max_id, id);
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  id_present_.assign(id_to_token_.size(), false);
  for (const auto& [token, id] : vocab_) {
    id_to_token_[id] = token;
    id_present_[id] = true;
  }

  if (auto d = model.find("dropout"); d != model.end() && !d->is_null() && d->is_number() && d->get<double>() > 0)
    throw InputError("BPE dropout is not supported (it makes encoding random)");
  unk_token_ = json_string_or(model, "unk_token", "", where);
  if (!unk_token_.empty()) unk_id_ = token_to_id(unk_token_);
  fuse_unk_ = json_bool(model, "fuse_unk", false, where);
  byte_fallback_ = json_bool(model, "byte_fallback", false, where);
  ignore_merges_ = json_bool(model, "ignore_merges", false, where);
  prefix_ = json_string_or(model, "continuing_subword_prefix", "", where);
  suffix_ = json_string_or(model, "end_of_word_suffix", "", where);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = token_to_id(name);
  }

  auto merges = model.find("merges");
  if (merges == model.end() || merges->is_null()) throw InputError("BPE model has no 'merges'");
  if (!merges->is_array()) throw InputError("BPE model 'merges' must be an array");
  merges_.reserve(merges->size());
  std::string left, right;
  for (size_t i = 0; i < merges->size(); ++i) {
    const json& m = (*merges)[i];
    bool ok = false;
    if (m.is_string()) {
      ok = split_merge_string(m.get_ref<const std::string&>(), left, right);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
      ok = true;
    }
    if (!ok)
      throw InputError("BPE merge " + std::to_string(i) + " (" + m.dump() +
                       ") is neither \"left right\" with exactly one ASCII space nor a [left, right] pair");
    add_merge(left, right, static_cast<uint32_t>(i));
  }
}

void BpeModel::add_merge(const std::string& left, const std::string& right, uint32_t rank) {
  const int32_t a = token_to_id(left), b = token_to_id(right);
  const std::string tail = right.substr(std::min(prefix_.size(), right.size()));
  const int32_t merged = token_to_id(left + tail);
  const std::string what = "BPE merge " + std::to_string(rank) + " '" + left + " " + right + "'";
  if (a < 0) throw InputError(what + ": '" + left + "' is not in the vocab");
  if (b < 0) throw InputError(what + ": '" + right + "' is not in the vocab");
  if (merged < 0) throw InputError(what + ": the merged token '" + left + tail + "' is not in the vocab");
  // A repeated pair keeps its last rank, as the reference's map does.
  merges_[pair_key(a, b)] = Merge{rank, merged};
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !id_present_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const int32_t id = token_to_id(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() < kCacheMaxEntries) cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, true});
  };

  // Characters to initial symbols. An unknown character becomes its bytes'
  // <0xAB> tokens (byte fallback) or the unk token; a pending unk is only
  // flushed by the next known character, exactly like the reference.
  int32_t pending_unk = -1;
  std::string piece;
  size_t i = 0;
  while (i < word.size()) {
    const size_t start = i;
    i += std::min(utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
    piece.assign(word.substr(start, i - start));
    if (start > 0 && !prefix_.empty()) piece.insert(0, prefix_);
    if (i == word.size()) piece += suffix_;
    if (const int32_t id = token_to_id(piece); id >= 0) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : piece) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : piece) add(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_token_.empty()) continue;  // the reference drops it silently; byte-level vocabs never get here
    if (unk_id_ < 0) throw InputError("BPE unk_token '" + unk_token_ + "' is not in the vocab");
    if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
    pending_unk = unk_id_;
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) heap.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(symbols.size()); ++p) push_pair(p);

  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    const Symbol right = symbols[left.next];
    // Stale entry: the pair at this position is no longer the one queued.
    auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    symbols[left.next].alive = false;
    left.id = top.new_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (const Symbol& s : symbols)
    if (s.alive) out.push_back(s.id);
}

}  // namespace streamq::tok
