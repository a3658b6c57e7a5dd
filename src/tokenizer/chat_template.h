// A model's chat template (Jinja, from chat_template.jinja or
// tokenizer_config.json) rendered as Hugging Face transformers'
// apply_chat_template renders it, through the vendored minja engine
// (src/tokenizer/minja/VENDORED.md). Used to turn calibration conversations
// ("messages") into the text the model saw in training.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace streamq {

class ChatTemplate {
 public:
  // `source` is the Jinja text; `special_tokens` the named special tokens
  // (bos_token, eos_token, unk_token, ...) the template may read; `origin`
  // names where the template came from, for messages. InputError when the
  // template does not parse.
  ChatTemplate(std::string source, std::map<std::string, std::string> special_tokens, std::string origin);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // The template of the model directory `dir`, looked up as transformers
  // does: chat_template.jinja, else tokenizer_config.json's "chat_template"
  // (a string, or a list of {name, template} of which "default" is used);
  // special tokens from tokenizer_config.json, overridden by
  // special_tokens_map.json. InputError naming the files when there is none.
  static ChatTemplate from_model_dir(const std::string& dir);

  // The text of `messages` (a JSON array of {role, content, ...} objects) with
  // `tools` and `documents` undefined-as-none and the special tokens in scope,
  // trim_blocks and lstrip_blocks on, as the reference does. strftime_now
  // formats a fixed date, 26 Jul 2024 (the fallback Llama 3's own templates
  // use), so that a calibration set never depends on the day it is built.
  // InputError carrying the template's message for raise_exception() and any
  // rendering failure.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt = false) const;

  const std::string& origin() const { return origin_; }
  const std::string& source() const { return source_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string source_, origin_;
};

}  // namespace streamq
