// Calibration from the samples a user has (`--calib-samples`): a .jsonl file
// of {"text": ...} or {"messages": [...]} records (messages rendered with the
// model's chat template), or plain text with one sample per line or per
// blank-line-separated paragraph. Each sample is one calibration sequence,
// cut to --seqlen, shorter ones kept at their length (no padding).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace streamq {

class Tokenizer;
class ChatTemplate;

// Token sequences for calibration, concatenated: sequence i is
// ids[offset(i), offset(i) + lengths[i]). Each is run as its own causal
// sequence from position 0.
struct CalibrationSet {
  std::vector<int32_t> ids;
  std::vector<int64_t> lengths;
  // From --calib-samples (else windows of a token stream, all of --seqlen).
  bool from_samples = false;
  std::string split;             // how a text file was cut: "line" or "paragraph" ("" for .jsonl / windows)
  int64_t samples_available = 0; // non-blank samples in the file
  int64_t samples_blank = 0;     // blank samples skipped (empty text)
  int64_t samples_chat = 0;      // selected samples rendered with the chat template
  int64_t truncated = 0;         // selected samples longer than --seqlen, cut to it
  int64_t tokens_dropped = 0;    // tokens cut off by truncation

  int64_t sequences() const { return static_cast<int64_t>(lengths.size()); }
  int64_t tokens() const { return static_cast<int64_t>(ids.size()); }
  // Whether every sequence has exactly `seqlen` tokens (the windowed layout).
  bool uniform(int64_t seqlen) const;
  // What the report shows: sequences, tokens, truncation, source.
  nlohmann::json to_json() const;
};

enum class SampleSelect { Random, First };
// Parses "random" / "first"; InputError naming --calib-select otherwise.
SampleSelect parse_sample_select(const std::string& s);
enum class TextSplit { Auto, Line, Paragraph };
// Parses "auto" / "line" / "paragraph"; InputError naming --calib-split otherwise.
TextSplit parse_text_split(const std::string& s);

struct SampleOptions {
  int64_t nsamples = 128;
  int64_t seqlen = 2048;
  uint64_t seed = 0;
  SampleSelect select = SampleSelect::Random;  // Random: nsamples drawn without replacement with seed
  TextSplit split = TextSplit::Auto;           // Auto: paragraphs when the file has a blank line, else lines
};

// One sample as read from a file: its text or its messages, and where it was.
struct RawSample {
  std::string text;                 // a text sample
  nlohmann::ordered_json messages;  // a chat sample (null for text)
  std::string where;                // "FILE:LINE" for messages
};

// Reads the samples of `path` (.jsonl, else plain text split as `split`
// says); blank text samples are skipped and counted. InputError names the
// file (and line) for a missing file, bad JSON, a record with neither or
// both of "text" and "messages", or a field of the wrong type.
std::vector<RawSample> read_samples(const std::string& path, TextSplit split, int64_t* blank,
                                    std::string* split_used);

// The indices of the chosen samples out of `available`: the first n, or n
// drawn uniformly without replacement (splitmix64 of `seed`, in draw order).
std::vector<int64_t> select_samples(int64_t available, int64_t n, SampleSelect select, uint64_t seed);

// The calibration set of `path` for a model: samples read, chosen, rendered
// (chat samples, through `chat`, which may be null when no sample needs it),
// tokenized (text samples with BOS/EOS as the tokenizer's config says; chat
// samples without added special tokens, as transformers' apply_chat_template)
// and cut to seqlen. InputError when the file has fewer than nsamples samples
// or a sample gives no tokens.
CalibrationSet build_calibration_samples(const std::string& path, const Tokenizer& tok, const ChatTemplate* chat,
                                         const SampleOptions& opt, int64_t vocab);

// The same, loading the tokenizer (and, when a sample has messages, the chat
// template) from the model directory.
CalibrationSet load_calibration_samples(const std::string& path, const std::string& model_dir,
                                        const SampleOptions& opt, int64_t vocab);

// The windowed draw of a token stream (sample_windows) as a calibration set.
CalibrationSet windows_calibration_set(std::vector<int32_t> windows, int64_t seqlen);

}  // namespace streamq
