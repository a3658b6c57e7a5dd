// Token file reading and windowing.
#include "src/pipeline/tokens.h"

#include <cstring>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "src/tokenizer/tokenizer.h"

#include <filesystem>

namespace streamq {

TokensDType parse_tokens_dtype(const std::string& s) {
  if (s == "uint16") return TokensDType::U16;
  if (s == "int32") return TokensDType::I32;
  throw InputError("--tokens-dtype '" + s + "': expected uint16 or int32");
}

std::vector<int32_t> read_token_file(const std::string& path, TokensDType dtype, int64_t vocab) {
  const std::string bytes = read_file(path);
  const size_t width = dtype == TokensDType::U16 ? 2 : 4;
  const char* kind = dtype == TokensDType::U16 ? "uint16" : "int32";
  if (bytes.empty()) throw InputError(path + ": token file is empty");
  // Text is not token ids (text goes to --calib-text / --eval-text, which
  // tokenize it). Printable ASCII throughout the first bytes is the tell.
  size_t printable = 0;
  const size_t probe = std::min<size_t>(bytes.size(), 512);
  for (size_t i = 0; i < probe; ++i) {
    const unsigned char ch = static_cast<unsigned char>(bytes[i]);
    if ((ch >= 0x20 && ch < 0x7f) || ch == '\n' || ch == '\r' || ch == '\t') ++printable;
  }
  if (probe >= 16 && printable == probe)
    throw InputError(path + ": looks like text, but this flag takes token ids (little-endian " + std::string(kind) +
                     ", no header); pass text with --calib-text / --eval-text instead");
  if (bytes.size() % width != 0)
    throw InputError(path + ": size " + std::to_string(bytes.size()) + " is not a multiple of " +
                     std::to_string(width) + " bytes (" + kind + " ids); wrong --tokens-dtype or truncated file?");
  const size_t n = bytes.size() / width;
  std::vector<int32_t> ids(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t v;
    if (width == 2) {
      uint16_t u;
      std::memcpy(&u, bytes.data() + 2 * i, 2);
      v = u;
    } else {
      int32_t s;
      std::memcpy(&s, bytes.data() + 4 * i, 4);
      v = s;
    }
    if (v < 0 || v >= vocab)
      throw InputError(path + ": token id " + std::to_string(v) + " at index " + std::to_string(i) +
                       " is outside the model's vocabulary [0, " + std::to_string(vocab) +
                       "); wrong --tokens-dtype or a file for another model?");
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

std::vector<int32_t> load_token_stream(const std::string& ids_path, TokensDType dtype, const std::string& text_path,
                                       const std::string& model_dir, int64_t vocab) {
  if (text_path.empty()) return read_token_file(ids_path, dtype, vocab);
  const std::string tok_path = model_dir + "/tokenizer.json";
  if (!std::filesystem::exists(tok_path))
    throw InputError(text_path + ": text input needs the model's tokenizer.json, but " + tok_path +
                     " does not exist; pass token ids instead");
  const auto tok = Tokenizer::load(tok_path);
  std::vector<int32_t> ids = tokenize_text_file(text_path, *tok);
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw InputError(tok_path + ": token id " + std::to_string(ids[i]) + " (from " + text_path +
                       ") is outside the model's vocabulary [0, " + std::to_string(vocab) + ")");
  if (ids.empty()) throw InputError(text_path + ": no tokens");
  return ids;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t draw_below(uint64_t& state, uint64_t n) {
  // Rejection sampling keeps the draw exactly uniform.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = splitmix64(state); while (r >= limit);
  return r % n;
}

std::vector<int32_t> sample_windows(const std::vector<int32_t>& stream, int64_t nsamples, int64_t seqlen,
                                    uint64_t seed, const std::string& source) {
  if (nsamples < 1) throw InputError("--nsamples must be >= 1");
  if (seqlen < 2) throw InputError("--seqlen must be >= 2");
  if (static_cast<int64_t>(stream.size()) < seqlen)
    throw InputError(source + ": " + std::to_string(stream.size()) + " tokens, fewer than --seqlen " +
                     std::to_string(seqlen));
  const uint64_t starts = stream.size() - static_cast<uint64_t>(seqlen) + 1;
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(nsamples * seqlen));
  uint64_t state = seed;
  for (int64_t s = 0; s < nsamples; ++s) {
    const uint64_t start = draw_below(state, starts);
    out.insert(out.end(), stream.begin() + static_cast<int64_t>(start),
               stream.begin() + static_cast<int64_t>(start) + seqlen);
  }
  return out;
}

std::vector<int32_t> eval_windows(const std::vector<int32_t>& stream, int64_t seqlen, int64_t windows,
                                  const std::string& source, int64_t* count) {
  if (seqlen < 2) throw InputError("--seqlen must be >= 2");
  const int64_t available = static_cast<int64_t>(stream.size()) / seqlen;
  if (available == 0)
    throw InputError(source + ": " + std::to_string(stream.size()) + " tokens, fewer than one window of --seqlen " +
                     std::to_string(seqlen));
  if (windows > available)
    throw InputError(source + ": --windows " + std::to_string(windows) + " needs " + std::to_string(windows * seqlen) +
                     " tokens, the file has " + std::to_string(stream.size()));
  *count = windows > 0 ? windows : available;
  return std::vector<int32_t>(stream.begin(), stream.begin() + *count * seqlen);
}

}  // namespace streamq
