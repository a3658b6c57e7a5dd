// Post-processors of tokenizer.json (see post.h). Only the
// single-sequence template matters to streamq (no pairs), so each processor
// reduces to the ids it puts before and after the text.
#include "src/tokenizer/post.h"

#include <sstream>

#include "src/tokenizer/tokenizer_json.h"

namespace streamq::tok {

namespace {

// The ids of a template SpecialToken, from the processor's special_tokens map.
std::vector<int32_t> special_ids(const json& j, const std::string& name, const std::string& where) {
  auto map = j.find("special_tokens");
  if (map == j.end() || !map->is_object() || !map->contains(name))
    throw InputError(where + ": template token '" + name + "' is not in 'special_tokens'");
  const json& entry = (*map)[name];
  if (!entry.contains("ids") || !entry["ids"].is_array())
    throw InputError(where + ": special token '" + name + "' has no 'ids' array");
  std::vector<int32_t> ids;
  for (const json& id : entry["ids"]) {
    if (!id.is_number_integer()) throw InputError(where + ": special token '" + name + "' has a non-integer id");
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

void template_processing(const json& j, PostProcessor& p, const std::string& where) {
  auto single = j.find("single");
  if (single == j.end()) throw InputError(where + ": missing 'single' template");
  bool seen_sequence = false;
  auto add = [&](const std::vector<int32_t>& ids) {
    auto& dst = seen_sequence ? p.after : p.before;
    dst.insert(dst.end(), ids.begin(), ids.end());
  };
  if (single->is_string()) {
    // The compact form "<s> $A </s>", each piece optionally ":type_id".
    std::istringstream words(single->get<std::string>());
    std::string w;
    while (words >> w) {
      const size_t colon = w.rfind(':');
      const std::string name = colon != std::string::npos && colon > 0 ? w.substr(0, colon) : w;
      if (name[0] == '$') seen_sequence = true;
      else add(special_ids(j, name, where));
    }
    return;
  }
  if (!single->is_array()) throw InputError(where + ": 'single' must be a list or a string");
  for (const json& item : *single) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
    } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id") &&
               item["SpecialToken"]["id"].is_string()) {
      add(special_ids(j, item["SpecialToken"]["id"].get<std::string>(), where));
    } else {
      throw InputError(where + ": template item " + item.dump() + " is neither Sequence nor SpecialToken");
    }
  }
}

// Roberta/Bert: "cls": [token, id], "sep": [token, id] -> cls $A sep.
int32_t pair_id(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer())
    throw InputError(where + ": '" + key + "' must be [token, id]");
  return (*it)[1].get<int32_t>();
}

void build(const json& j, PostProcessor& p) {
  if (j.is_null()) return;
  if (!j.is_object()) throw InputError("post_processor must be an object or null");
  const std::string type = json_type(j);
  const std::string where = "post_processor '" + type + "'";
  if (type == "ByteLevel") return;  // adjusts offsets only
  if (type == "TemplateProcessing") {
    PostProcessor mine;
    template_processing(j, mine, where);
    // Processors in a Sequence wrap what the earlier ones produced.
    p.before.insert(p.before.begin(), mine.before.begin(), mine.before.end());
    p.after.insert(p.after.end(), mine.after.begin(), mine.after.end());
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    p.before.insert(p.before.begin(), pair_id(j, "cls", where));
    p.after.push_back(pair_id(j, "sep", where));
    return;
  }
  if (type == "Sequence") {
    auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) throw InputError(where + ": missing 'processors' array");
    for (const json& sub : *it) build(sub, p);
    return;
  }
  throw InputError("unsupported post_processor '" + type +
                   "'; streamq supports TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing and Sequence");
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j) {
  if (j.is_null()) return nullptr;
  auto p = std::make_unique<PostProcessor>();
  build(j, *p);
  return p;
}

}  // namespace streamq::tok
