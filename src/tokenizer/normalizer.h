// tokenizer.json normalizers: the text rewrites applied to each piece between
// added tokens before pre-tokenization (Llama-2's Prepend("▁") + Replace(" ",
// "▁"), Strip, Sequence, ...).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace streamq::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `text` is valid UTF-8 (the tokenizer rejects invalid text before this).
  virtual std::string normalize(std::string_view text) const = 0;
};

// nullptr for a JSON null. Throws InputError naming an unsupported type.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);

// Replaces every non-overlapping occurrence of `from` (non-empty) with `to`.
std::string replace_all(std::string_view text, std::string_view from, std::string_view to);

}  // namespace streamq::tok
