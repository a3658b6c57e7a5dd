// --calib-samples (see calibration_samples.h): samples read, chosen,
// rendered, tokenized and cut to --seqlen.
#include "src/pipeline/calibration_samples.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <numeric>

#include "io/file/file_util.h"
#include "src/core/error.h"
#include "src/pipeline/tokens.h"
#include "src/tokenizer/chat_template.h"
#include "src/tokenizer/tokenizer.h"

namespace streamq {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos; }

// The lines of `data` without their "\n" (and a "\r" before it).
std::vector<std::string_view> split_lines(const std::string& data) {
  std::vector<std::string_view> lines;
  size_t at = 0;
  while (at < data.size()) {
    size_t end = data.find('\n', at);
    if (end == std::string::npos) end = data.size();
    std::string_view line(data.data() + at, end - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    at = end + 1;
  }
  return lines;
}

std::vector<RawSample> read_jsonl(const std::string& path, const std::string& data, int64_t* blank) {
  std::vector<RawSample> out;
  const auto lines = split_lines(data);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (is_blank(lines[i])) continue;
    const std::string where = path + ":" + std::to_string(i + 1);
    nlohmann::ordered_json doc;
    try {
      doc = nlohmann::ordered_json::parse(lines[i]);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(where + ": not valid JSON: " + e.what());
    }
    if (!doc.is_object()) throw InputError(where + ": expected a JSON object with \"text\" or \"messages\"");
    const bool has_text = doc.contains("text"), has_messages = doc.contains("messages");
    if (has_text == has_messages)
      throw InputError(where + (has_text ? ": has both \"text\" and \"messages\"; give one"
                                         : ": no \"text\" or \"messages\" field"));
    RawSample s;
    s.where = where;
    if (has_text) {
      if (!doc["text"].is_string()) throw InputError(where + ": the \"text\" field is not a string");
      s.text = doc["text"].get<std::string>();
      if (is_blank(s.text)) {
        ++*blank;
        continue;
      }
    } else {
      const auto& m = doc["messages"];
      if (!m.is_array() || m.empty()) throw InputError(where + ": \"messages\" must be a non-empty list");
      for (const auto& msg : m)
        if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
          throw InputError(where + ": each message must be an object with a string \"role\"");
      s.messages = m;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<RawSample> read_text(const std::string& path, const std::string& data, TextSplit split, int64_t* blank,
                                 std::string* split_used) {
  const auto lines = split_lines(data);
  if (split == TextSplit::Auto) {
    // Paragraphs when a blank line separates two non-blank ones.
    bool seen_text = false, gap = false;
    split = TextSplit::Line;
    for (const auto& l : lines) {
      if (is_blank(l)) {
        gap = seen_text;
      } else {
        if (gap) {
          split = TextSplit::Paragraph;
          break;
        }
        seen_text = true;
      }
    }
  }
  *split_used = split == TextSplit::Line ? "line" : "paragraph";
  std::vector<RawSample> out;
  if (split == TextSplit::Line) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (is_blank(lines[i])) {
        ++*blank;
        continue;
      }
      RawSample s;
      s.text = std::string(lines[i]);
      s.where = path + ":" + std::to_string(i + 1);
      out.push_back(std::move(s));
    }
    return out;
  }
  for (size_t i = 0; i < lines.size();) {
    if (is_blank(lines[i])) {
      ++i;
      continue;
    }
    RawSample s;
    s.where = path + ":" + std::to_string(i + 1);
    for (; i < lines.size() && !is_blank(lines[i]); ++i) {
      if (!s.text.empty()) s.text += '\n';
      s.text.append(lines[i]);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

bool CalibrationSet::uniform(int64_t seqlen) const {
  return std::all_of(lengths.begin(), lengths.end(), [&](int64_t l) { return l == seqlen; });
}

nlohmann::json CalibrationSet::to_json() const {
  nlohmann::json j = {{"source", from_samples ? "samples" : "windows"},
                      {"sequences", sequences()},
                      {"tokens", tokens()}};
  if (from_samples) {
    j["samples_available"] = samples_available;
    j["samples_blank_skipped"] = samples_blank;
    j["samples_chat"] = samples_chat;
    j["samples_truncated"] = truncated;
    j["tokens_truncated"] = tokens_dropped;
    if (!split.empty()) j["split"] = split;
    if (!lengths.empty()) {
      j["min_length"] = *std::min_element(lengths.begin(), lengths.end());
      j["max_length"] = *std::max_element(lengths.begin(), lengths.end());
    }
  }
  return j;
}

SampleSelect parse_sample_select(const std::string& s) {
  if (s == "random") return SampleSelect::Random;
  if (s == "first") return SampleSelect::First;
  throw InputError("--calib-select '" + s + "': expected random or first");
}

TextSplit parse_text_split(const std::string& s) {
  if (s == "auto") return TextSplit::Auto;
  if (s == "line") return TextSplit::Line;
  if (s == "paragraph") return TextSplit::Paragraph;
  throw InputError("--calib-split '" + s + "': expected auto, line or paragraph");
}

std::vector<RawSample> read_samples(const std::string& path, TextSplit split, int64_t* blank,
                                    std::string* split_used) {
  const std::string data = read_file(path);
  *blank = 0;
  split_used->clear();
  if (ends_with(path, ".jsonl")) return read_jsonl(path, data, blank);
  return read_text(path, data, split, blank, split_used);
}

std::vector<int64_t> select_samples(int64_t available, int64_t n, SampleSelect select, uint64_t seed) {
  std::vector<int64_t> idx(static_cast<size_t>(available));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  if (select == SampleSelect::Random) {
    // Partial Fisher-Yates: position i takes a uniform pick of the rest.
    uint64_t state = seed;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = i + static_cast<int64_t>(draw_below(state, static_cast<uint64_t>(available - i)));
      std::swap(idx[i], idx[j]);
    }
  }
  idx.resize(static_cast<size_t>(n));
  return idx;
}

namespace {

// Chooses, renders, tokenizes and cuts the samples already read; `chat` is
// asked for the template the first time a chosen sample has messages.
CalibrationSet build_from(std::vector<RawSample> samples, int64_t blank, std::string split, const std::string& path,
                          const Tokenizer& tok, const std::function<const ChatTemplate&()>& chat,
                          const SampleOptions& opt, int64_t vocab) {
  if (opt.nsamples < 1) throw InputError("--nsamples must be >= 1");
  if (opt.seqlen < 2) throw InputError("--seqlen must be >= 2");
  CalibrationSet set;
  set.from_samples = true;
  set.samples_blank = blank;
  set.split = std::move(split);
  set.samples_available = static_cast<int64_t>(samples.size());
  if (set.samples_available < opt.nsamples)
    throw InputError(path + ": " + std::to_string(set.samples_available) + " samples" +
                     (set.samples_blank ? " (" + std::to_string(set.samples_blank) + " blank ones skipped)" : "") +
                     ", fewer than --nsamples " + std::to_string(opt.nsamples));
  for (const int64_t i : select_samples(set.samples_available, opt.nsamples, opt.select, opt.seed)) {
    const RawSample& s = samples[static_cast<size_t>(i)];
    std::vector<int32_t> ids;
    try {
      if (s.messages.is_null()) {
        if (tok.adds_bos()) ids.push_back(tok.bos_id());
        const std::vector<int32_t> body = tok.encode(s.text, false);
        ids.insert(ids.end(), body.begin(), body.end());
        if (tok.adds_eos()) ids.push_back(tok.eos_id());
      } else {
        ids = tok.encode(chat().render(s.messages, false), false);
        ++set.samples_chat;
      }
    } catch (const InputError& e) {
      throw InputError(s.where + ": " + e.what());
    }
    if (ids.empty()) throw InputError(s.where + ": the sample gives no tokens");
    for (const int32_t id : ids)
      if (id < 0 || id >= vocab)
        throw InputError(s.where + ": token id " + std::to_string(id) + " is outside the model's vocabulary [0, " +
                         std::to_string(vocab) + ")");
    if (static_cast<int64_t>(ids.size()) > opt.seqlen) {
      ++set.truncated;
      set.tokens_dropped += static_cast<int64_t>(ids.size()) - opt.seqlen;
      ids.resize(static_cast<size_t>(opt.seqlen));
    }
    set.lengths.push_back(static_cast<int64_t>(ids.size()));
    set.ids.insert(set.ids.end(), ids.begin(), ids.end());
  }
  return set;
}

}  // namespace

CalibrationSet build_calibration_samples(const std::string& path, const Tokenizer& tok, const ChatTemplate* chat,
                                         const SampleOptions& opt, int64_t vocab) {
  int64_t blank = 0;
  std::string split;
  std::vector<RawSample> samples = read_samples(path, opt.split, &blank, &split);
  auto get_chat = [&]() -> const ChatTemplate& {
    if (!chat) throw InputError("a sample with \"messages\" needs the model's chat template");
    return *chat;
  };
  return build_from(std::move(samples), blank, std::move(split), path, tok, get_chat, opt, vocab);
}

CalibrationSet load_calibration_samples(const std::string& path, const std::string& model_dir,
                                        const SampleOptions& opt, int64_t vocab) {
  const std::string tok_path = model_dir + "/tokenizer.json";
  if (!std::filesystem::exists(tok_path))
    throw InputError(path + ": calibration samples need the model's tokenizer.json, but " + tok_path +
                     " does not exist; pass token ids with --calib instead");
  int64_t blank = 0;
  std::string split;
  std::vector<RawSample> samples = read_samples(path, opt.split, &blank, &split);
  const auto tok = Tokenizer::load(tok_path);
  // The chat template is read only when a chosen sample has messages.
  std::unique_ptr<ChatTemplate> chat;
  auto get_chat = [&]() -> const ChatTemplate& {
    if (!chat) chat = std::make_unique<ChatTemplate>(ChatTemplate::from_model_dir(model_dir));
    return *chat;
  };
  return build_from(std::move(samples), blank, std::move(split), path, *tok, get_chat, opt, vocab);
}

CalibrationSet windows_calibration_set(std::vector<int32_t> windows, int64_t seqlen) {
  CalibrationSet set;
  set.lengths.assign(windows.size() / static_cast<size_t>(seqlen), seqlen);
  set.ids = std::move(windows);
  return set;
}

}  // namespace streamq
