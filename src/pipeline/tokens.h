// Token-id streams for calibration and evaluation: reading headerless id files
// and cutting them into windows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace streamq {

enum class TokensDType { U16, I32 };
// Parses "uint16" / "int32"; throws InputError naming --tokens-dtype otherwise.
TokensDType parse_tokens_dtype(const std::string& s);

// Reads a little-endian id file without header. Throws InputError naming the
// file when it is missing, empty, not a whole number of ids, looks like text,
// or holds an id outside [0, vocab).
std::vector<int32_t> read_token_file(const std::string& path, TokensDType dtype, int64_t vocab);

// Ids from either a token-id file or a text file (.txt whole, .jsonl "text"
// fields) tokenized with the model's own tokenizer.json (BOS/EOS per its
// config). Exactly one of ids_path / text_path is non-empty.
std::vector<int32_t> load_token_stream(const std::string& ids_path, TokensDType dtype, const std::string& text_path,
                                       const std::string& model_dir, int64_t vocab);

// splitmix64: the generator of every calibration draw, so that a seed gives
// the same draw on every platform and standard library.
uint64_t splitmix64(uint64_t& state);
// A uniform integer in [0, n) from splitmix64 by rejection (n >= 1).
uint64_t draw_below(uint64_t& state, uint64_t n);

// GPTQ's calibration convention: nsamples windows of seqlen tokens starting at
// uniformly drawn offsets in [0, size - seqlen], deterministic for a seed
// (splitmix64, so the draw does not depend on the standard library).
std::vector<int32_t> sample_windows(const std::vector<int32_t>& stream, int64_t nsamples, int64_t seqlen,
                                    uint64_t seed, const std::string& source);
// The first `windows` non-overlapping windows stream[w*seqlen, (w+1)*seqlen);
// windows <= 0 means all whole windows.
std::vector<int32_t> eval_windows(const std::vector<int32_t>& stream, int64_t seqlen, int64_t windows,
                                  const std::string& source, int64_t* count);

}  // namespace streamq
