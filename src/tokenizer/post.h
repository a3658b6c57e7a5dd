// tokenizer.json post-processors: what encode(add_special=true) adds around a
// single sequence (TemplateProcessing's <s> $A, Roberta/Bert's cls/sep, the
// no-op ByteLevel, Sequence of those).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

namespace streamq::tok {

class PostProcessor {
 public:
  // Ids placed before and after the sequence of a single input.
  std::vector<int32_t> before, after;
  void apply(std::vector<int32_t>& ids) const {
    ids.insert(ids.begin(), before.begin(), before.end());
    ids.insert(ids.end(), after.begin(), after.end());
  }
};

// nullptr for a JSON null. Throws InputError naming an unsupported type.
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j);

}  // namespace streamq::tok
