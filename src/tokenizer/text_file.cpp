// tokenize_text_file (see tokenizer.h): calibration/evaluation text files to
// token ids, one document per .jsonl line or one per plain file.
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "src/tokenizer/tokenizer.h"

namespace streamq {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

void append_document(const Tokenizer& tokenizer, std::string_view text, bool add_special,
                     std::vector<int32_t>& out) {
  if (add_special && tokenizer.adds_bos()) out.push_back(tokenizer.bos_id());
  const std::vector<int32_t> ids = tokenizer.encode(text, false);
  out.insert(out.end(), ids.begin(), ids.end());
  if (add_special && tokenizer.adds_eos()) out.push_back(tokenizer.eos_id());
}

}  // namespace

std::vector<int32_t> tokenize_text_file(const std::string& path, const Tokenizer& tokenizer, bool add_special) {
  const std::string data = read_file(path);
  std::vector<int32_t> out;
  if (!ends_with(path, ".jsonl")) {
    try {
      append_document(tokenizer, data, add_special, out);
    } catch (const InputError& e) {
      throw InputError(path + ": " + e.what());
    }
    return out;
  }
  size_t line_no = 0;
  size_t at = 0;
  while (at < data.size()) {
    size_t end = data.find('\n', at);
    if (end == std::string::npos) end = data.size();
    const std::string_view line(data.data() + at, end - at);
    at = end + 1;
    ++line_no;
    if (is_blank(line)) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(where + ": not valid JSON: " + e.what());
    }
    if (!doc.is_object() || !doc.contains("text")) throw InputError(where + ": no \"text\" field");
    if (!doc["text"].is_string()) throw InputError(where + ": the \"text\" field is not a string");
    try {
      append_document(tokenizer, doc["text"].get_ref<const std::string&>(), add_special, out);
    } catch (const InputError& e) {
      throw InputError(where + ": " + e.what());
    }
  }
  return out;
}

}  // namespace streamq
