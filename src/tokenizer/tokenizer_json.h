// Reading tokenizer.json fields with errors that say which field is wrong:
// optional fields fall back to the reference library's defaults, present
// fields of the wrong type are an InputError rather than a nlohmann exception.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "src/core/error.h"

namespace streamq::tok {

using nlohmann::json;

// `where` names the object for messages, e.g. "pre_tokenizer 'Split'".
inline bool json_bool(const json& j, const char* key, bool fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw InputError(where + ": field '" + key + "' must be true or false");
  return it->get<bool>();
}

inline std::string json_string(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) throw InputError(where + ": missing string field '" + key + "'");
  return it->get<std::string>();
}

inline std::string json_string_or(const json& j, const char* key, const std::string& fallback,
                                  const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw InputError(where + ": field '" + key + "' must be a string");
  return it->get<std::string>();
}

inline int64_t json_int_or(const json& j, const char* key, int64_t fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) throw InputError(where + ": field '" + key + "' must be an integer");
  return it->get<int64_t>();
}

// The "type" of a component; empty when absent.
inline std::string json_type(const json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A {"String": s} or {"Regex": r} pattern object: sets is_regex, returns the text.
inline std::string json_pattern(const json& j, const std::string& where, bool& is_regex) {
  auto it = j.find("pattern");
  if (it == j.end() || !it->is_object()) throw InputError(where + ": missing 'pattern' object");
  if (it->contains("String") && (*it)["String"].is_string()) {
    is_regex = false;
    return (*it)["String"].get<std::string>();
  }
  if (it->contains("Regex") && (*it)["Regex"].is_string()) {
    is_regex = true;
    return (*it)["Regex"].get<std::string>();
  }
  throw InputError(where + ": 'pattern' must be {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace streamq::tok
